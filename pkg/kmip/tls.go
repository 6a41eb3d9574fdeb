package kmip

import (
	"crypto/tls"
	"slices"
	"strings"
)

// The KMIP profiles' TLS 1.2 authentication suite (KMIP Profiles 1.x,
// "TLS 1.2 Authentication Suite") makes TLS_RSA_WITH_AES_128_CBC_SHA256
// mandatory and lists AES-CBC with HMAC-SHA256/384 over RSA, DH and ECDHE
// key exchange, plus the ECDHE-ECDSA AES-GCM suites. Go's default TLS 1.2
// suites are ECDHE with AES-GCM, ChaCha20-Poly1305 or AES-CBC-SHA1; so a
// server that follows the profile with an RSA certificate (PyKMIP's
// TLS1.2 suite, many appliances; RSA is what most enterprise PKIs issue)
// shares no suite with them and the handshake fails. Of the profile's
// suites for RSA keys Go implements these two; the others
// (TLS_RSA_WITH_AES_256_CBC_SHA256, ECDHE-RSA-AES256-SHA384 and the DH
// ones) it does not.
//
// They are CBC with HMAC (MAC-then-encrypt, exposed to Lucky13-style
// timing; the second has no forward secrecy either), which is why Go
// leaves them out and they are added only when the configuration asks
// (Config.TLS12ProfileSuites). Even then Go offers them last: they are
// used only with a server that has neither TLS 1.3 nor an AEAD suite for
// its certificate, and the client logs it when they are.
var profileSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
}

// withProfileSuites returns the TLS 1.2 suites of base (Go's defaults,
// the ECDHE suites of tls.CipherSuites, when base is nil) and the
// profile's. TLS 1.3 suites are not configurable and stay as they are.
func withProfileSuites(base []uint16) []uint16 {
	ids := slices.Clone(base)
	if ids == nil {
		for _, s := range tls.CipherSuites() {
			if slices.Contains(s.SupportedVersions, tls.VersionTLS12) && strings.HasPrefix(s.Name, "TLS_ECDHE_") {
				ids = append(ids, s.ID)
			}
		}
	}
	for _, id := range profileSuites {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// isProfileSuite reports whether a negotiated suite is one that only
// TLS12ProfileSuites enables.
func isProfileSuite(id uint16) bool { return slices.Contains(profileSuites, id) }

// noSharedSuiteHint is added to a handshake failure when the profile's
// suites were not offered: the likeliest cause with a KMIP server.
const noSharedSuiteHint = `the server may offer only the KMIP profile's TLS 1.2 suites (usual with RSA certificates): set "tls12_profile_suites": true in the KMIP configuration`

package kmip

import (
	"context"
	"fmt"
	"time"
)

// The operations below follow the request and response payloads of the
// KMIP 1.2–1.4 specifications, §4. Fields are sent in the specification's
// order; servers (PyKMIP among them) parse them in that order.

// AES256EncryptDecrypt are the attributes of an AES-256 key that may only
// encrypt and decrypt: the key encryption key encblk asks a server for.
func AES256EncryptDecrypt() []Attribute {
	return []Attribute{Algorithm(AlgorithmAES), Length(256), Usage(UsageEncrypt | UsageDecrypt)}
}

func createRequest(attrs []Attribute) Request {
	return Request{Operation: OpCreate, Payload: []Item{
		Enum(TagObjectType, uint32(ObjectSymmetricKey)), templateAttribute(attrs),
	}}
}

// Create asks the server to generate a symmetric key with attrs (for
// example AES256EncryptDecrypt()) and returns its Unique Identifier. The
// key is created Pre-Active.
func (c *Client) Create(ctx context.Context, attrs ...Attribute) (string, error) {
	return c.callUID(ctx, createRequest(attrs))
}

// callUID sends one request whose answer carries a Unique Identifier and
// returns it.
func (c *Client) callUID(ctx context.Context, req Request) (string, error) {
	var uid string
	err := c.call(ctx, req.Operation, req.Payload, func(p Item) (err error) {
		uid, err = field[string](p, TagUniqueIdentifier, TypeTextString)
		return err
	})
	return uid, err
}

// CreateActive creates a symmetric key and activates it, so it is usable
// at once, and returns its Unique Identifier. (The specification lets a
// batch's Activate refer to the key its Create just made through the ID
// placeholder, but PyKMIP's parser requires the identifier, so these are
// two requests.) If activation fails, the new key is destroyed again,
// best-effort, and the activation error returned.
func (c *Client) CreateActive(ctx context.Context, attrs ...Attribute) (string, error) {
	uid, err := c.Create(ctx, attrs...)
	if err != nil {
		return "", err
	}
	if err := c.Activate(ctx, uid); err != nil {
		if derr := c.Destroy(ctx, uid); derr != nil {
			c.log.Warn("kmip: could not destroy a key that failed to activate", "uid", uid, "err", derr)
		}
		return "", err
	}
	return uid, nil
}

// SymmetricKeyObject is a Symmetric Key managed object holding raw key
// material, for Register.
func SymmetricKeyObject(alg CryptographicAlgorithm, key []byte) Item {
	return Struct(TagSymmetricKey, Struct(TagKeyBlock,
		Enum(TagKeyFormatType, uint32(KeyFormatRaw)),
		Struct(TagKeyValue, Bytes(TagKeyMaterial, key)),
		Enum(TagCryptographicAlgorithm, uint32(alg)),
		Int(TagCryptographicLength, int32(8*len(key))),
	))
}

// Register stores an object the client supplies (for example
// SymmetricKeyObject) with attrs and returns its Unique Identifier.
func (c *Client) Register(ctx context.Context, t ObjectType, object Item, attrs ...Attribute) (string, error) {
	return c.callUID(ctx, Request{Operation: OpRegister, Payload: []Item{
		Enum(TagObjectType, uint32(t)), templateAttribute(attrs), object}})
}

// uidOp runs an operation whose request and response are a Unique
// Identifier, and checks the answer names the same object.
func (c *Client) uidOp(ctx context.Context, op Operation, uid string, extra ...Item) error {
	return c.sendUIDOp(ctx, Request{Operation: op, Payload: append([]Item{Text(TagUniqueIdentifier, uid)}, extra...)}, uid)
}

func (c *Client) sendUIDOp(ctx context.Context, req Request, uid string) error {
	return c.call(ctx, req.Operation, req.Payload, func(p Item) error {
		return checkUID(Response{Operation: req.Operation, Payload: p}, uid)
	})
}

// checkUID checks that a response names the object the request did.
func checkUID(r Response, uid string) error {
	got, err := field[string](r.Payload, TagUniqueIdentifier, TypeTextString)
	if err != nil {
		return err
	}
	if got != uid {
		return fmt.Errorf("%w: %v of %q answered for %q", ErrUnexpectedResponse, r.Operation, uid, got)
	}
	return nil
}

// Activate moves a Pre-Active object to Active.
func (c *Client) Activate(ctx context.Context, uid string) error {
	return c.uidOp(ctx, OpActivate, uid)
}

// Revoke revokes an object: with RevocationKeyCompromise it becomes
// Compromised, otherwise an Active object becomes Deactivated. Either way
// the server stops using it to encrypt or decrypt (crypto-lock). message
// is an optional note for the server's records.
func (c *Client) Revoke(ctx context.Context, uid string, code RevocationReasonCode, message string) error {
	return c.sendUIDOp(ctx, revokeRequest(uid, code, message), uid)
}

func revokeRequest(uid string, code RevocationReasonCode, message string) Request {
	reason := []Item{Enum(TagRevocationReasonCode, uint32(code))}
	if message != "" {
		reason = append(reason, Text(TagRevocationMessage, message))
	}
	p := []Item{Text(TagUniqueIdentifier, uid), Struct(TagRevocationReason, reason...)}
	if code == RevocationKeyCompromise {
		p = append(p, DateTime(TagCompromiseOccurrenceDate, time.Now()))
	}
	return Request{Operation: OpRevoke, Payload: p}
}

// Destroy destroys an object's key material. Servers refuse to destroy an
// Active key; revoke it first, or use RevokeDestroy.
func (c *Client) Destroy(ctx context.Context, uid string) error {
	return c.uidOp(ctx, OpDestroy, uid)
}

// RevokeDestroy revokes an object (as Revoke) and destroys it, in one
// batched request that stops at the first failure.
func (c *Client) RevokeDestroy(ctx context.Context, uid string, code RevocationReasonCode, message string) error {
	resps, err := c.exchange(ctx, []Request{revokeRequest(uid, code, message),
		{Operation: OpDestroy, Payload: []Item{Text(TagUniqueIdentifier, uid)}}},
		func(rs []Response) error {
			for _, r := range rs {
				if r.Err != nil {
					return nil
				}
				if err := checkUID(r, uid); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	for _, r := range resps {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// Object is a managed object returned by Get.
type Object struct {
	Type      ObjectType
	UID       string
	Algorithm CryptographicAlgorithm // 0 if the object has none
	Length    int32                  // bits; 0 if the object has none
	Format    KeyFormatType
	// Material is the key material of a Raw or Opaque key block, or the
	// wrapped key value; the caller should wipe it.
	Material []byte
}

// Get returns an object's key material. A server refuses this for a key it
// marked non-extractable or sensitive; encblk's KEK source never calls it.
func (c *Client) Get(ctx context.Context, uid string) (*Object, error) {
	var o *Object
	err := c.call(ctx, OpGet, []Item{Text(TagUniqueIdentifier, uid)}, func(p Item) (err error) {
		o, err = parseGetPayload(p)
		return err
	})
	return o, err
}

// parseGetPayload reads a Get response payload.
func parseGetPayload(p Item) (*Object, error) {
	ot, err := field[uint32](p, TagObjectType, TypeEnumeration)
	if err != nil {
		return nil, err
	}
	o := &Object{Type: ObjectType(ot)}
	if o.UID, err = field[string](p, TagUniqueIdentifier, TypeTextString); err != nil {
		return nil, err
	}
	var kb Item
	found := false
	for _, c := range p.Children() {
		if c.Tag != TagObjectType && c.Tag != TagUniqueIdentifier && c.Type == TypeStructure {
			kb, found = c.Child(TagKeyBlock)
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: Get of %q returned no Key Block", ErrUnexpectedResponse, o.UID)
	}
	f, err := field[uint32](kb, TagKeyFormatType, TypeEnumeration)
	if err != nil {
		return nil, err
	}
	o.Format = KeyFormatType(f)
	kv, ok := kb.Child(TagKeyValue)
	if !ok {
		return nil, fmt.Errorf("%w: Key Block has no Key Value", ErrUnexpectedResponse)
	}
	switch kv.Type {
	case TypeByteString: // wrapped
		o.Material, _ = kv.Value.([]byte)
	case TypeStructure:
		if o.Material, err = field[[]byte](kv, TagKeyMaterial, TypeByteString); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: Key Value is a %v", ErrUnexpectedResponse, kv.Type)
	}
	if a, ok, err := optField[uint32](kb, TagCryptographicAlgorithm, TypeEnumeration); err != nil {
		return nil, err
	} else if ok {
		o.Algorithm = CryptographicAlgorithm(a)
	}
	if l, _, err := optField[int32](kb, TagCryptographicLength, TypeInteger); err != nil {
		return nil, err
	} else {
		o.Length = l
	}
	return o, nil
}

// GetAttributes returns the named attributes of an object, or all of them
// when no names are given.
func (c *Client) GetAttributes(ctx context.Context, uid string, names ...string) (Attributes, error) {
	req := []Item{Text(TagUniqueIdentifier, uid)}
	for _, n := range names {
		req = append(req, Text(TagAttributeName, n))
	}
	var out Attributes
	err := c.call(ctx, OpGetAttributes, req, func(p Item) error {
		out = nil
		for _, it := range p.All(TagAttribute) {
			a, err := parseAttribute(it)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// KeyState returns the State attribute of an object.
func (c *Client) KeyState(ctx context.Context, uid string) (State, error) {
	as, err := c.GetAttributes(ctx, uid, AttrState)
	if err != nil {
		return 0, err
	}
	s, ok := as.State()
	if !ok {
		return 0, fmt.Errorf("%w: no State attribute for %q", ErrUnexpectedResponse, uid)
	}
	return s, nil
}

// Locate returns the Unique Identifiers of objects matching every one of
// attrs (at most maxItems of them when maxItems > 0).
func (c *Client) Locate(ctx context.Context, maxItems int32, attrs ...Attribute) ([]string, error) {
	var req []Item
	if maxItems > 0 {
		req = append(req, Int(TagMaximumItems, maxItems))
	}
	for _, a := range attrs {
		req = append(req, a.item())
	}
	var out []string
	err := c.call(ctx, OpLocate, req, func(p Item) error {
		out = nil
		for _, it := range p.All(TagUniqueIdentifier) {
			s, err := typed[string](it, TypeTextString)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// CryptoParams are the Cryptographic Parameters of Encrypt and Decrypt.
type CryptoParams struct {
	Algorithm CryptographicAlgorithm
	Mode      BlockCipherMode
	Padding   PaddingMethod // 0: not sent
	TagLength int32         // AEAD tag length in bytes (GCM); 0: not sent
}

// AESGCM are the parameters encblk uses: AES-GCM with a 16-byte tag.
var AESGCM = CryptoParams{Algorithm: AlgorithmAES, Mode: ModeGCM, TagLength: 16}

func (p CryptoParams) item() Item {
	f := []Item{Enum(TagBlockCipherMode, uint32(p.Mode))}
	if p.Padding != 0 {
		f = append(f, Enum(TagPaddingMethod, uint32(p.Padding)))
	}
	f = append(f, Enum(TagCryptographicAlgorithm, uint32(p.Algorithm)))
	if p.TagLength != 0 {
		f = append(f, Int(TagTagLength, p.TagLength))
	}
	return Struct(TagCryptographicParameters, f...)
}

// Ciphertext is what Encrypt returns and Decrypt takes.
type Ciphertext struct {
	Data []byte
	IV   []byte // the IV/counter/nonce used (sent by the client or chosen by the server)
	Tag  []byte // the AEAD tag, for GCM
}

// checkAEAD refuses GCM below KMIP 1.4, whose payloads first carry the
// additional data and tag.
func (c *Client) checkAEAD(p CryptoParams) error {
	if p.Mode == ModeGCM && !c.version.AtLeast(Version1_4) {
		return fmt.Errorf("kmip: AES-GCM needs KMIP 1.4 or later; the client speaks %v", c.version)
	}
	return nil
}

// Encrypt has the server encrypt data with the key uid, which never leaves
// the server. iv may be nil to let the server choose one (it is returned);
// aad is GCM's additional authenticated data.
func (c *Client) Encrypt(ctx context.Context, uid string, p CryptoParams, data, iv, aad []byte) (*Ciphertext, error) {
	if err := c.checkAEAD(p); err != nil {
		return nil, err
	}
	req := []Item{Text(TagUniqueIdentifier, uid), p.item(), Bytes(TagData, data)}
	if iv != nil {
		req = append(req, Bytes(TagIVCounterNonce, iv))
	}
	if aad != nil {
		req = append(req, Bytes(TagAuthenticatedEncryptionAAD, aad))
	}
	var ct *Ciphertext
	err := c.call(ctx, OpEncrypt, req, func(resp Item) (err error) {
		ct, err = parseCiphertext(resp, p, iv)
		return err
	})
	return ct, err
}

func parseCiphertext(resp Item, p CryptoParams, iv []byte) (*Ciphertext, error) {
	ct := &Ciphertext{IV: iv}
	var err error
	if ct.Data, err = field[[]byte](resp, TagData, TypeByteString); err != nil {
		return nil, err
	}
	if v, ok, err := optField[[]byte](resp, TagIVCounterNonce, TypeByteString); err != nil {
		return nil, err
	} else if ok {
		ct.IV = v
	}
	if v, ok, err := optField[[]byte](resp, TagAuthenticatedEncryptionTag, TypeByteString); err != nil {
		return nil, err
	} else if ok {
		ct.Tag = v
	}
	if p.Mode == ModeGCM && (len(ct.Tag) != int(p.TagLength) || len(ct.IV) == 0) {
		return nil, fmt.Errorf("%w: GCM encryption returned a %d-byte tag and a %d-byte nonce", ErrUnexpectedResponse, len(ct.Tag), len(ct.IV))
	}
	return ct, nil
}

// Decrypt has the server decrypt ct with the key uid. The returned
// plaintext should be wiped by the caller once used.
func (c *Client) Decrypt(ctx context.Context, uid string, p CryptoParams, ct *Ciphertext, aad []byte) ([]byte, error) {
	if err := c.checkAEAD(p); err != nil {
		return nil, err
	}
	req := []Item{Text(TagUniqueIdentifier, uid), p.item(), Bytes(TagData, ct.Data)}
	if ct.IV != nil {
		req = append(req, Bytes(TagIVCounterNonce, ct.IV))
	}
	if aad != nil {
		req = append(req, Bytes(TagAuthenticatedEncryptionAAD, aad))
	}
	if ct.Tag != nil {
		req = append(req, Bytes(TagAuthenticatedEncryptionTag, ct.Tag))
	}
	var pt []byte
	err := c.call(ctx, OpDecrypt, req, func(resp Item) (err error) {
		pt, err = field[[]byte](resp, TagData, TypeByteString)
		return err
	})
	return pt, err
}

// DiscoverVersions asks which protocol versions the server supports, in its
// order of preference; with versions given, which of those it supports.
func (c *Client) DiscoverVersions(ctx context.Context, versions ...ProtocolVersion) ([]ProtocolVersion, error) {
	req := make([]Item, len(versions))
	for i, v := range versions {
		req[i] = v.item()
	}
	var out []ProtocolVersion
	err := c.call(ctx, OpDiscoverVersions, req, func(p Item) error {
		out = nil
		for _, it := range p.All(TagProtocolVersion) {
			v, err := parseProtocolVersion(it)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// ServerInfo is the answer to Query.
type ServerInfo struct {
	Operations  []Operation
	ObjectTypes []ObjectType
	Vendor      string
}

// Supports reports whether the server listed op.
func (s *ServerInfo) Supports(op Operation) bool {
	for _, o := range s.Operations {
		if o == op {
			return true
		}
	}
	return false
}

// Query asks the server which operations and object types it supports and
// who made it.
func (c *Client) Query(ctx context.Context) (*ServerInfo, error) {
	var info *ServerInfo
	err := c.call(ctx, OpQuery, []Item{
		Enum(TagQueryFunction, uint32(QueryOperations)),
		Enum(TagQueryFunction, uint32(QueryObjects)),
		Enum(TagQueryFunction, uint32(QueryServerInformation)),
	}, func(p Item) (err error) {
		info, err = parseServerInfo(p)
		return err
	})
	return info, err
}

func parseServerInfo(p Item) (*ServerInfo, error) {
	info := &ServerInfo{}
	for _, it := range p.All(TagOperation) {
		v, err := typed[uint32](it, TypeEnumeration)
		if err != nil {
			return nil, err
		}
		info.Operations = append(info.Operations, Operation(v))
	}
	for _, it := range p.All(TagObjectType) {
		v, err := typed[uint32](it, TypeEnumeration)
		if err != nil {
			return nil, err
		}
		info.ObjectTypes = append(info.ObjectTypes, ObjectType(v))
	}
	v, _, err := optField[string](p, TagVendorIdentification, TypeTextString)
	if err != nil {
		return nil, err
	}
	info.Vendor = sanitize(v)
	return info, nil
}

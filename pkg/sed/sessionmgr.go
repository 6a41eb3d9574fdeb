package sed

// Session manager methods (Core 2.01 section 5.2), invoked on SMUID outside
// any session (TSN = HSN = 0 in the Packet).

// Named optional parameters of StartSession (Core 2.01 table 225).
const (
	ParamHostChallenge        = 0
	ParamHostExchangeAuth     = 1
	ParamHostExchangeCert     = 2
	ParamHostSigningAuthority = 3
	ParamSessionTimeout       = 5
)

// StartSessionCall builds SMUID.StartSession [HostSessionID, SPID, Write,
// HostChallenge = challenge, HostSigningAuthority = authority]. With a
// zero authority the session is anonymous (Anybody) and no challenge is
// sent.
func StartSessionCall(hsn uint32, sp UID, write bool, authority UID, challenge []byte) MethodCall {
	args := []Value{Uint(hsn), sp.Value(), Bool(write)}
	if authority != (UID{}) {
		args = append(args,
			Name{Uint(ParamHostChallenge), Secret(challenge)},
			Name{Uint(ParamHostSigningAuthority), authority.Value()})
	}
	return MethodCall{Invoking: SMUID, Method: MethodStartSession, Args: args}
}

// HostProperty is one name/value pair of the Properties method.
type HostProperty struct {
	Name  string
	Value uint64
}

// DefaultHostProperties are the communication limits this host announces:
// one 2048-byte ComPacket, as Linux and sedutil do, which every Opal
// drive accepts.
var DefaultHostProperties = []HostProperty{
	{"MaxComPacketSize", 2048},
	{"MaxPacketSize", 2028},
	{"MaxIndTokenSize", 1992},
	{"MaxPackets", 1},
	{"MaxSubpackets", 1},
	{"MaxMethods", 1},
}

// PropertiesCall builds SMUID.Properties [HostProperties = [ ... ]].
func PropertiesCall(props []HostProperty) MethodCall {
	l := make(List, len(props))
	for i, p := range props {
		l[i] = Name{Bytes(p.Name), Uint(p.Value)}
	}
	return MethodCall{Invoking: SMUID, Method: MethodProperties, Args: []Value{Name{Uint(0), l}}}
}

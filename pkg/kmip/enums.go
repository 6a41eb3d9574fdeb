package kmip

import "fmt"

// Enumeration values from the KMIP 1.2 specification §9.1.3.2. Only the
// values this client uses are named.

// Operation is the Operation enumeration (§9.1.3.2.27).
type Operation uint32

// Operations.
const (
	OpCreate           Operation = 0x01
	OpRegister         Operation = 0x03
	OpLocate           Operation = 0x08
	OpGet              Operation = 0x0A
	OpGetAttributes    Operation = 0x0B
	OpGetAttributeList Operation = 0x0C
	OpActivate         Operation = 0x12
	OpRevoke           Operation = 0x13
	OpDestroy          Operation = 0x14
	OpQuery            Operation = 0x18
	OpDiscoverVersions Operation = 0x1E
	OpEncrypt          Operation = 0x1F
	OpDecrypt          Operation = 0x20
)

var opNames = map[Operation]string{
	OpCreate: "Create", 0x02: "Create Key Pair", OpRegister: "Register", 0x04: "Re-key",
	0x05: "Derive Key", 0x06: "Certify", 0x07: "Re-certify", OpLocate: "Locate", 0x09: "Check",
	OpGet: "Get", OpGetAttributes: "Get Attributes", OpGetAttributeList: "Get Attribute List",
	0x0D: "Add Attribute", 0x0E: "Modify Attribute", 0x0F: "Delete Attribute", 0x10: "Obtain Lease",
	0x11: "Get Usage Allocation", OpActivate: "Activate", OpRevoke: "Revoke", OpDestroy: "Destroy",
	0x15: "Archive", 0x16: "Recover", 0x17: "Validate", OpQuery: "Query", 0x19: "Cancel", 0x1A: "Poll",
	0x1B: "Notify", 0x1C: "Put", 0x1D: "Re-key Key Pair", OpDiscoverVersions: "Discover Versions",
	OpEncrypt: "Encrypt", OpDecrypt: "Decrypt", 0x21: "Sign", 0x22: "Signature Verify", 0x23: "MAC",
	0x24: "MAC Verify", 0x25: "RNG Retrieve", 0x26: "RNG Seed", 0x27: "Hash",
	0x28: "Create Split Key", 0x29: "Join Split Key",
}

func (o Operation) String() string { return enumName(opNames, o) }

// ObjectType is the Object Type enumeration (§9.1.3.2.12).
type ObjectType uint32

// Object types.
const (
	ObjectCertificate  ObjectType = 0x01
	ObjectSymmetricKey ObjectType = 0x02
	ObjectPublicKey    ObjectType = 0x03
	ObjectPrivateKey   ObjectType = 0x04
	ObjectSplitKey     ObjectType = 0x05
	ObjectTemplate     ObjectType = 0x06
	ObjectSecretData   ObjectType = 0x07
	ObjectOpaque       ObjectType = 0x08
)

var objectTypeNames = map[ObjectType]string{
	ObjectCertificate: "Certificate", ObjectSymmetricKey: "Symmetric Key", ObjectPublicKey: "Public Key",
	ObjectPrivateKey: "Private Key", ObjectSplitKey: "Split Key", ObjectTemplate: "Template",
	ObjectSecretData: "Secret Data", ObjectOpaque: "Opaque Object",
}

func (o ObjectType) String() string { return enumName(objectTypeNames, o) }

// ResultStatus is the Result Status enumeration (§9.1.3.2.29).
type ResultStatus uint32

// Result statuses.
const (
	StatusSuccess          ResultStatus = 0x00
	StatusOperationFailed  ResultStatus = 0x01
	StatusOperationPending ResultStatus = 0x02
	StatusOperationUndone  ResultStatus = 0x03
)

var statusNames = map[ResultStatus]string{
	StatusSuccess: "Success", StatusOperationFailed: "Operation Failed",
	StatusOperationPending: "Operation Pending", StatusOperationUndone: "Operation Undone",
}

func (s ResultStatus) String() string { return enumName(statusNames, s) }

// ResultReason is the Result Reason enumeration (§9.1.3.2.30): why an
// operation failed.
type ResultReason uint32

// Result reasons.
const (
	ReasonItemNotFound                 ResultReason = 0x01
	ReasonResponseTooLarge             ResultReason = 0x02
	ReasonAuthenticationNotSuccessful  ResultReason = 0x03
	ReasonInvalidMessage               ResultReason = 0x04
	ReasonOperationNotSupported        ResultReason = 0x05
	ReasonMissingData                  ResultReason = 0x06
	ReasonInvalidField                 ResultReason = 0x07
	ReasonFeatureNotSupported          ResultReason = 0x08
	ReasonOperationCanceledByRequester ResultReason = 0x09
	ReasonCryptographicFailure         ResultReason = 0x0A
	ReasonIllegalOperation             ResultReason = 0x0B
	ReasonPermissionDenied             ResultReason = 0x0C
	ReasonObjectArchived               ResultReason = 0x0D
	ReasonIndexOutOfBounds             ResultReason = 0x0E
	ReasonNamespaceNotSupported        ResultReason = 0x0F
	ReasonKeyFormatTypeNotSupported    ResultReason = 0x10
	ReasonKeyCompressionNotSupported   ResultReason = 0x11
	ReasonEncodingOptionError          ResultReason = 0x12
	ReasonKeyValueNotPresent           ResultReason = 0x13
	ReasonAttestationRequired          ResultReason = 0x14
	ReasonAttestationFailed            ResultReason = 0x15
	ReasonSensitive                    ResultReason = 0x16
	ReasonNotExtractable               ResultReason = 0x17
	ReasonObjectAlreadyExists          ResultReason = 0x18
	ReasonGeneralFailure               ResultReason = 0x100
)

var reasonNames = map[ResultReason]string{
	ReasonItemNotFound: "Item Not Found", ReasonResponseTooLarge: "Response Too Large",
	ReasonAuthenticationNotSuccessful: "Authentication Not Successful", ReasonInvalidMessage: "Invalid Message",
	ReasonOperationNotSupported: "Operation Not Supported", ReasonMissingData: "Missing Data",
	ReasonInvalidField: "Invalid Field", ReasonFeatureNotSupported: "Feature Not Supported",
	ReasonOperationCanceledByRequester: "Operation Canceled By Requester",
	ReasonCryptographicFailure:         "Cryptographic Failure", ReasonIllegalOperation: "Illegal Operation",
	ReasonPermissionDenied: "Permission Denied", ReasonObjectArchived: "Object Archived",
	ReasonIndexOutOfBounds: "Index Out of Bounds", ReasonNamespaceNotSupported: "Application Namespace Not Supported",
	ReasonKeyFormatTypeNotSupported:  "Key Format Type Not Supported",
	ReasonKeyCompressionNotSupported: "Key Compression Type Not Supported",
	ReasonEncodingOptionError:        "Encoding Option Error", ReasonKeyValueNotPresent: "Key Value Not Present",
	ReasonAttestationRequired: "Attestation Required", ReasonAttestationFailed: "Attestation Failed",
	ReasonSensitive: "Sensitive", ReasonNotExtractable: "Not Extractable",
	ReasonObjectAlreadyExists: "Object Already Exists", ReasonGeneralFailure: "General Failure",
}

func (r ResultReason) String() string { return enumName(reasonNames, r) }

// State is the State enumeration (§9.1.3.2.2x, attribute State §3.22):
// the life-cycle state of a managed object.
type State uint32

// Object states.
const (
	StatePreActive            State = 0x01
	StateActive               State = 0x02
	StateDeactivated          State = 0x03
	StateCompromised          State = 0x04
	StateDestroyed            State = 0x05
	StateDestroyedCompromised State = 0x06
)

var stateNames = map[State]string{
	StatePreActive: "Pre-Active", StateActive: "Active", StateDeactivated: "Deactivated",
	StateCompromised: "Compromised", StateDestroyed: "Destroyed",
	StateDestroyedCompromised: "Destroyed Compromised",
}

func (s State) String() string { return enumName(stateNames, s) }

// CryptographicAlgorithm is the Cryptographic Algorithm enumeration.
type CryptographicAlgorithm uint32

// AlgorithmAES is the only algorithm encblk asks for.
const AlgorithmAES CryptographicAlgorithm = 0x03

// BlockCipherMode is the Block Cipher Mode enumeration.
type BlockCipherMode uint32

// Block cipher modes.
const (
	ModeCBC BlockCipherMode = 0x01
	ModeECB BlockCipherMode = 0x02
	ModeCTR BlockCipherMode = 0x06
	ModeGCM BlockCipherMode = 0x09
)

// PaddingMethod is the Padding Method enumeration.
type PaddingMethod uint32

// Padding methods.
const (
	PaddingNone  PaddingMethod = 0x01
	PaddingPKCS5 PaddingMethod = 0x03
)

// UsageMask is the Cryptographic Usage Mask bit mask (§9.1.3.3.1).
type UsageMask int32

// Usage mask bits.
const (
	UsageSign    UsageMask = 0x01
	UsageVerify  UsageMask = 0x02
	UsageEncrypt UsageMask = 0x04
	UsageDecrypt UsageMask = 0x08
	UsageWrapKey UsageMask = 0x10
	UsageUnwrap  UsageMask = 0x20
	UsageExport  UsageMask = 0x40
)

// RevocationReasonCode is the Revocation Reason Code enumeration.
type RevocationReasonCode uint32

// Revocation reason codes.
const (
	RevocationUnspecified          RevocationReasonCode = 0x01
	RevocationKeyCompromise        RevocationReasonCode = 0x02
	RevocationCACompromise         RevocationReasonCode = 0x03
	RevocationAffiliationChanged   RevocationReasonCode = 0x04
	RevocationSuperseded           RevocationReasonCode = 0x05
	RevocationCessationOfOperation RevocationReasonCode = 0x06
	RevocationPrivilegeWithdrawn   RevocationReasonCode = 0x07
)

// QueryFunction is the Query Function enumeration.
type QueryFunction uint32

// Query functions.
const (
	QueryOperations        QueryFunction = 0x01
	QueryObjects           QueryFunction = 0x02
	QueryServerInformation QueryFunction = 0x03
)

// KeyFormatType is the Key Format Type enumeration.
type KeyFormatType uint32

// Key format types.
const (
	KeyFormatRaw    KeyFormatType = 0x01
	KeyFormatOpaque KeyFormatType = 0x02
)

// NameType is the Name Type enumeration.
type NameType uint32

// NameUninterpretedText is a free-form name.
const NameUninterpretedText NameType = 0x01

// batchErrorStop makes the server stop a batch at its first failure.
const batchErrorStop uint32 = 0x02

func enumName[E ~uint32](names map[E]string, v E) string {
	if n, ok := names[v]; ok {
		return n
	}
	return fmt.Sprintf("0x%08X", uint32(v))
}

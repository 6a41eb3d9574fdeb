package kmip

import "fmt"

// Tag identifies a TTLV item (KMIP 1.2 specification §9.1.3.1). Only the
// tags this client sends or reads are named here; Decode accepts any tag in
// the KMIP and extension ranges.
type Tag uint32

// Tags used by encblk's KMIP client.
const (
	TagActivationDate               Tag = 0x420001
	TagApplicationData              Tag = 0x420002
	TagApplicationNamespace         Tag = 0x420003
	TagApplicationSpecificInfo      Tag = 0x420004
	TagAttribute                    Tag = 0x420008
	TagAttributeIndex               Tag = 0x420009
	TagAttributeName                Tag = 0x42000A
	TagAttributeValue               Tag = 0x42000B
	TagBatchCount                   Tag = 0x42000D
	TagBatchErrorContinuationOption Tag = 0x42000E
	TagBatchItem                    Tag = 0x42000F
	TagBatchOrderOption             Tag = 0x420010
	TagBlockCipherMode              Tag = 0x420011
	TagCompromiseOccurrenceDate     Tag = 0x420021
	TagCryptographicAlgorithm       Tag = 0x420028
	TagCryptographicLength          Tag = 0x42002A
	TagCryptographicParameters      Tag = 0x42002B
	TagCryptographicUsageMask       Tag = 0x42002C
	TagDeactivationDate             Tag = 0x42002F
	TagInitialDate                  Tag = 0x420039
	TagIVCounterNonce               Tag = 0x42003D
	TagKeyBlock                     Tag = 0x420040
	TagKeyCompressionType           Tag = 0x420041
	TagKeyFormatType                Tag = 0x420042
	TagKeyMaterial                  Tag = 0x420043
	TagKeyValue                     Tag = 0x420045
	TagMaximumItems                 Tag = 0x42004F
	TagMaximumResponseSize          Tag = 0x420050
	TagName                         Tag = 0x420053
	TagNameType                     Tag = 0x420054
	TagNameValue                    Tag = 0x420055
	TagObjectType                   Tag = 0x420057
	TagOperation                    Tag = 0x42005C
	TagPaddingMethod                Tag = 0x42005F
	TagProtocolVersion              Tag = 0x420069
	TagProtocolVersionMajor         Tag = 0x42006A
	TagProtocolVersionMinor         Tag = 0x42006B
	TagQueryFunction                Tag = 0x420074
	TagRequestHeader                Tag = 0x420077
	TagRequestMessage               Tag = 0x420078
	TagRequestPayload               Tag = 0x420079
	TagResponseHeader               Tag = 0x42007A
	TagResponseMessage              Tag = 0x42007B
	TagResponsePayload              Tag = 0x42007C
	TagResultMessage                Tag = 0x42007D
	TagResultReason                 Tag = 0x42007E
	TagResultStatus                 Tag = 0x42007F
	TagRevocationMessage            Tag = 0x420080
	TagRevocationReason             Tag = 0x420081
	TagRevocationReasonCode         Tag = 0x420082
	TagSecretData                   Tag = 0x420085
	TagSecretDataType               Tag = 0x420086
	TagServerInformation            Tag = 0x420088
	TagState                        Tag = 0x42008D
	TagSymmetricKey                 Tag = 0x42008F
	TagTemplateAttribute            Tag = 0x420091
	TagTimeStamp                    Tag = 0x420092
	TagUniqueBatchItemID            Tag = 0x420093
	TagUniqueIdentifier             Tag = 0x420094
	TagVendorIdentification         Tag = 0x42009D
	TagData                         Tag = 0x4200C2
	TagRandomIV                     Tag = 0x4200C5
	TagIVLength                     Tag = 0x4200CD
	TagTagLength                    Tag = 0x4200CE
	TagAuthenticatedEncryptionAAD   Tag = 0x4200FE
	TagAuthenticatedEncryptionTag   Tag = 0x4200FF
)

var tagNames = map[Tag]string{
	TagActivationDate: "Activation Date", TagApplicationData: "Application Data",
	TagApplicationNamespace: "Application Namespace", TagApplicationSpecificInfo: "Application Specific Information",
	TagAttribute: "Attribute", TagAttributeIndex: "Attribute Index", TagAttributeName: "Attribute Name",
	TagAttributeValue: "Attribute Value", TagBatchCount: "Batch Count",
	TagBatchErrorContinuationOption: "Batch Error Continuation Option", TagBatchItem: "Batch Item",
	TagBatchOrderOption: "Batch Order Option", TagBlockCipherMode: "Block Cipher Mode",
	TagCompromiseOccurrenceDate: "Compromise Occurrence Date", TagCryptographicAlgorithm: "Cryptographic Algorithm",
	TagCryptographicLength: "Cryptographic Length", TagCryptographicParameters: "Cryptographic Parameters",
	TagCryptographicUsageMask: "Cryptographic Usage Mask", TagDeactivationDate: "Deactivation Date",
	TagInitialDate: "Initial Date", TagIVCounterNonce: "IV/Counter/Nonce", TagKeyBlock: "Key Block",
	TagKeyCompressionType: "Key Compression Type", TagKeyFormatType: "Key Format Type",
	TagKeyMaterial: "Key Material", TagKeyValue: "Key Value", TagMaximumItems: "Maximum Items",
	TagMaximumResponseSize: "Maximum Response Size", TagName: "Name", TagNameType: "Name Type",
	TagNameValue: "Name Value", TagObjectType: "Object Type", TagOperation: "Operation",
	TagPaddingMethod: "Padding Method", TagProtocolVersion: "Protocol Version",
	TagProtocolVersionMajor: "Protocol Version Major", TagProtocolVersionMinor: "Protocol Version Minor",
	TagQueryFunction: "Query Function", TagRequestHeader: "Request Header", TagRequestMessage: "Request Message",
	TagRequestPayload: "Request Payload", TagResponseHeader: "Response Header",
	TagResponseMessage: "Response Message", TagResponsePayload: "Response Payload",
	TagResultMessage: "Result Message", TagResultReason: "Result Reason", TagResultStatus: "Result Status",
	TagRevocationMessage: "Revocation Message", TagRevocationReason: "Revocation Reason",
	TagRevocationReasonCode: "Revocation Reason Code", TagSecretData: "Secret Data",
	TagSecretDataType: "Secret Data Type", TagServerInformation: "Server Information", TagState: "State",
	TagSymmetricKey: "Symmetric Key", TagTemplateAttribute: "Template-Attribute", TagTimeStamp: "Time Stamp",
	TagUniqueBatchItemID: "Unique Batch Item ID", TagUniqueIdentifier: "Unique Identifier",
	TagVendorIdentification: "Vendor Identification", TagData: "Data", TagRandomIV: "Random IV",
	TagIVLength: "IV Length", TagTagLength: "Tag Length",
	TagAuthenticatedEncryptionAAD: "Authenticated Encryption Additional Data",
	TagAuthenticatedEncryptionTag: "Authenticated Encryption Tag",
}

// String names the tag as the specification does, or prints it in hex.
func (t Tag) String() string {
	if n, ok := tagNames[t]; ok {
		return n
	}
	return fmt.Sprintf("Tag(0x%06X)", uint32(t))
}

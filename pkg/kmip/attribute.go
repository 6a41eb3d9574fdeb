package kmip

import "fmt"

// Attribute is a KMIP attribute (KMIP 1.2 §2.1.1): a name, an optional
// index for multi-instance attributes, and a value whose item type depends
// on the attribute.
type Attribute struct {
	Name  string
	Index int32 // 0 unless the attribute has several instances
	Value Item  // its Tag is ignored; it is sent as Attribute Value
}

// Attribute names (KMIP 1.2 §3), as they appear on the wire.
const (
	AttrCryptographicAlgorithm = "Cryptographic Algorithm"
	AttrCryptographicLength    = "Cryptographic Length"
	AttrCryptographicUsageMask = "Cryptographic Usage Mask"
	AttrName                   = "Name"
	AttrObjectType             = "Object Type"
	AttrState                  = "State"
	AttrUniqueIdentifier       = "Unique Identifier"
	AttrActivationDate         = "Activation Date"
	AttrInitialDate            = "Initial Date"
	AttrSensitive              = "Sensitive"
)

// Algorithm is the Cryptographic Algorithm attribute.
func Algorithm(a CryptographicAlgorithm) Attribute {
	return Attribute{Name: AttrCryptographicAlgorithm, Value: Enum(TagAttributeValue, uint32(a))}
}

// Length is the Cryptographic Length attribute, in bits.
func Length(bits int32) Attribute {
	return Attribute{Name: AttrCryptographicLength, Value: Int(TagAttributeValue, bits)}
}

// Usage is the Cryptographic Usage Mask attribute.
func Usage(m UsageMask) Attribute {
	return Attribute{Name: AttrCryptographicUsageMask, Value: Int(TagAttributeValue, int32(m))}
}

// Name is the Name attribute with an uninterpreted text value.
func Name(name string) Attribute {
	return Attribute{Name: AttrName, Value: Struct(TagAttributeValue,
		Text(TagNameValue, name), Enum(TagNameType, uint32(NameUninterpretedText)))}
}

// Sensitive is the Sensitive attribute (KMIP 1.4 §3.53): a sensitive key's
// material is not returned by Get unless wrapped by another key.
func Sensitive(v bool) Attribute {
	return Attribute{Name: AttrSensitive, Value: Bool(TagAttributeValue, v)}
}

// ObjectTypeAttr is the Object Type attribute, for Locate.
func ObjectTypeAttr(t ObjectType) Attribute {
	return Attribute{Name: AttrObjectType, Value: Enum(TagAttributeValue, uint32(t))}
}

// StateAttr is the State attribute, for Locate.
func StateAttr(s State) Attribute {
	return Attribute{Name: AttrState, Value: Enum(TagAttributeValue, uint32(s))}
}

func (a Attribute) item() Item {
	f := []Item{Text(TagAttributeName, a.Name)}
	if a.Index != 0 {
		f = append(f, Int(TagAttributeIndex, a.Index))
	}
	v := a.Value
	v.Tag = TagAttributeValue
	return Struct(TagAttribute, append(f, v)...)
}

func parseAttribute(it Item) (Attribute, error) {
	if it.Type != TypeStructure {
		return Attribute{}, fmt.Errorf("%w: Attribute is a %v", ErrUnexpectedResponse, it.Type)
	}
	name, err := field[string](it, TagAttributeName, TypeTextString)
	if err != nil {
		return Attribute{}, err
	}
	idx, _, err := optField[int32](it, TagAttributeIndex, TypeInteger)
	if err != nil {
		return Attribute{}, err
	}
	v, ok := it.Child(TagAttributeValue)
	if !ok {
		return Attribute{}, fmt.Errorf("%w: attribute %q has no value", ErrUnexpectedResponse, name)
	}
	return Attribute{Name: name, Index: idx, Value: v}, nil
}

// Attributes is a set of attributes as returned by Get Attributes.
type Attributes []Attribute

// Get returns the first attribute called name.
func (as Attributes) Get(name string) (Attribute, bool) {
	for _, a := range as {
		if a.Name == name {
			return a, true
		}
	}
	return Attribute{}, false
}

// State returns the State attribute, if present and well-typed.
func (as Attributes) State() (State, bool) {
	a, ok := as.Get(AttrState)
	if !ok {
		return 0, false
	}
	v, err := typed[uint32](a.Value, TypeEnumeration)
	return State(v), err == nil
}

func templateAttribute(attrs []Attribute) Item {
	items := make([]Item, len(attrs))
	for i, a := range attrs {
		items[i] = a.item()
	}
	return Struct(TagTemplateAttribute, items...)
}

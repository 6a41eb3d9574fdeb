package kmip

import "fmt"

// Children returns the items of a Structure (nil for other types).
func (it Item) Children() []Item {
	c, _ := it.Value.([]Item)
	return c
}

// Child returns the first child of a Structure with the given tag.
func (it Item) Child(tag Tag) (Item, bool) {
	for _, c := range it.Children() {
		if c.Tag == tag {
			return c, true
		}
	}
	return Item{}, false
}

// All returns every child of a Structure with the given tag, in order.
func (it Item) All(tag Tag) []Item {
	var out []Item
	for _, c := range it.Children() {
		if c.Tag == tag {
			out = append(out, c)
		}
	}
	return out
}

// typed is the Go type an item type decodes to.
func typed[T any](it Item, want Type) (T, error) {
	var zero T
	if it.Type != want {
		return zero, fmt.Errorf("%w: %v is a %v, want %v", ErrUnexpectedResponse, it.Tag, it.Type, want)
	}
	v, ok := it.Value.(T)
	if !ok {
		return zero, fmt.Errorf("%w: %v holds %T", ErrUnexpectedResponse, it.Tag, it.Value)
	}
	return v, nil
}

// field returns the required child tag of parent, of item type want.
func field[T any](parent Item, tag Tag, want Type) (T, error) {
	c, ok := parent.Child(tag)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%w: %v has no %v", ErrUnexpectedResponse, parent.Tag, tag)
	}
	return typed[T](c, want)
}

// optField is field for an optional child; ok is false when it is absent.
func optField[T any](parent Item, tag Tag, want Type) (v T, ok bool, err error) {
	c, present := parent.Child(tag)
	if !present {
		return v, false, nil
	}
	v, err = typed[T](c, want)
	return v, err == nil, err
}

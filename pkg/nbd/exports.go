package nbd

import (
	"sort"
)

// Exports is what a Server serves: backends by export name. The default
// export has the empty name "". Implementations must be safe for concurrent
// use; the set may change while the server runs (a daemon adding a volume),
// and a connection keeps the Backend it looked up for its lifetime.
type Exports interface {
	// Lookup returns the backend of the named export.
	Lookup(name string) (Backend, bool)
	// Names lists the exports for NBD_OPT_LIST.
	Names() []string
}

// StaticExports is a fixed set of exports. Do not modify it while served.
type StaticExports map[string]Backend

// Lookup returns the backend of the named export.
func (m StaticExports) Lookup(name string) (Backend, bool) {
	b, ok := m[name]
	return b, ok
}

// Names lists the export names, sorted.
func (m StaticExports) Names() []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

package nbd

import (
	"sort"
)

// Exports is what a Server serves: exports by name. The default export
// has the empty name "". Implementations must be safe for concurrent use;
// the set may change while the server runs (a daemon adding a volume), and
// a connection keeps the Export it looked up for its lifetime.
type Exports interface {
	// Lookup returns the named export.
	Lookup(name string) (Export, bool)
	// Names lists the exports for NBD_OPT_LIST.
	Names() []string
}

// StaticExports is a fixed set of exports. Do not modify it while served.
type StaticExports map[string]Export

// Lookup returns the named export.
func (m StaticExports) Lookup(name string) (Export, bool) {
	x, ok := m[name]
	return x, ok
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

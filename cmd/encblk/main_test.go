package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"encblk": func() { os.Exit(run(os.Args[1:])) },
	})
}

// TestScript runs the CLI scenarios in testdata/script, one file per scenario.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}

// Command encblk turns a plain file or block device into an encrypted virtual
// disk (AES-XTS, LUKS2 on-disk format) and serves it over NBD.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the CLI with args and returns the process exit status, so the
// testscript harness can drive the same code in-process.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	// cobra already printed usage errors; everything else gets one line.
	fmt.Fprintf(os.Stderr, "encblk: %v\n", err)
	return code
}

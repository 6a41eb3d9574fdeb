// Command encblk turns a plain file or block device into an encrypted virtual
// disk (AES-XTS, LUKS2 on-disk format) and serves it over NBD.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes the CLI with args and returns the process exit status, so the
// testscript harness can drive the same code in-process.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if code != exitUsage && cmd != nil {
		err = namePath(cmd, err)
	}
	// cobra already printed usage errors; everything else gets one line.
	fmt.Fprintf(os.Stderr, "encblk: %v\n", err)
	return code
}

// namePath makes an error about the volume (exit status 2 to 5: wrong
// key, busy, corrupt, I/O) name the path of the command's device, its
// first argument, unless it names that or another of the paths given
// already ("path: …", as the libraries and os errors put it), so that
// every command names it exactly once.
func namePath(cmd *cobra.Command, err error) error {
	paths := cmd.Flags().Args()
	if len(paths) == 0 {
		return err
	}
	if f := cmd.Flags().Lookup("header"); f != nil && f.Value.String() != "" {
		paths = append(paths, f.Value.String())
	}
	msg := err.Error()
	for _, p := range paths {
		if strings.Contains(msg, p+":") {
			return err
		}
	}
	return fmt.Errorf("%s: %w", paths[0], err)
}

package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/encblk/encblk/internal/testutil"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"encblk": func() { os.Exit(run(os.Args[1:])) },
	})
}

// TestScript runs the CLI scenarios in testdata/script, one file per scenario.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script", Cmds: scriptCmds(), Condition: toolCondition})
}

// toolCondition is the scripts' condition [tool:NAME]: NAME is on PATH.
// A script skips without it (`[!tool:cryptsetup] skip`), or fails when
// ENCBLK_REQUIRE_TOOLS=1, as testutil.RequireTool does; testscript's own
// [exec:NAME] would skip there too.
func toolCondition(cond string) (bool, error) {
	name, ok := strings.CutPrefix(cond, "tool:")
	if !ok {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	if _, err := exec.LookPath(name); err == nil {
		return true, nil
	}
	if testutil.ToolsRequired() {
		return false, fmt.Errorf("%s not found on PATH (scripts/deps.sh installs it) [%s=1]", name, testutil.RequireToolsEnv)
	}
	return false, nil
}

// scriptCmds are the commands every scenario may use besides testscript's:
//
//	exits CODE PROGRAM [ARGS...]
//
// runs PROGRAM as exec does (its stdout and stderr are what the next
// stdout and stderr lines check) and fails unless it exits with status
// CODE, one of the documented exit statuses (exit.go). A failing command is
// checked with exits, never with `! exec`, which accepts any non-zero
// status and so passes for the wrong reason too.
//
//	waitstate STATE TARGET
//
// polls `encblk status TARGET` until its state line says STATE (locked,
// unlocked): a server started in the background is ready. The two-minute
// bound only catches a hang (a shell loop of 100 tries of 0.1 s was a
// timing assumption on a loaded machine).
func scriptCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"exits": func(ts *testscript.TestScript, neg bool, args []string) {
			if neg || len(args) < 2 {
				ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
			}
			want, err := strconv.Atoi(args[0])
			if err != nil {
				ts.Fatalf("exits: status %q is not a number", args[0])
			}
			got := 0
			var ee *exec.ExitError
			switch err := ts.Exec(args[1], args[2:]...); {
			case errors.As(err, &ee):
				got = ee.ExitCode()
			case err != nil:
				ts.Fatalf("exits: %v", err)
			}
			if got != want {
				ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
			}
		},
		"waitstate": func(ts *testscript.TestScript, neg bool, args []string) {
			if neg || len(args) != 2 {
				ts.Fatalf("usage: waitstate STATE TARGET")
			}
			state := regexp.MustCompile(`(?m)^state: *` + regexp.QuoteMeta(args[0]) + `\b`)
			for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
				if ts.Exec("encblk", "status", args[1]) == nil && state.MatchString(ts.ReadFile("stdout")) {
					return
				}
				if time.Now().After(deadline) {
					ts.Fatalf("waitstate: %s is not %s after 2 minutes", args[1], args[0])
				}
			}
		},
	}
}

// withScriptCmds adds scriptCmds to a scenario set's own commands.
func withScriptCmds(cmds map[string]func(ts *testscript.TestScript, neg bool, args []string)) map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	maps.Copy(cmds, scriptCmds())
	return cmds
}

// TestScriptsCheckExitStatus: no scenario checks a failing encblk with
// `! exec`, which any non-zero status satisfies (a usage error passes where
// a wrong key was meant); `exits CODE encblk ...` names the status. Nor
// does one skip with testscript's [exec:NAME], which skips under
// ENCBLK_REQUIRE_TOOLS=1 too; [tool:NAME] (toolCondition) fails there.
func TestScriptsCheckExitStatus(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios found (%v)", err)
	}
	rules := []struct {
		re  *regexp.Regexp
		fix string
	}{
		{regexp.MustCompile(`^\s*!\s*exec\s+encblk\b`), "use `exits CODE encblk ...` (the documented exit status) instead of `! exec`"},
		{regexp.MustCompile(`\[!?exec:`), "use [tool:NAME] or [!tool:NAME]: [exec:NAME] skips even under ENCBLK_REQUIRE_TOOLS=1"},
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, r := range rules {
				if r.re.MatchString(line) {
					t.Errorf("%s:%d: %q: %s", f, i+1, line, r.fix)
				}
			}
		}
	}
}

// A missing tool skips a script, or fails it under ENCBLK_REQUIRE_TOOLS=1.
func TestToolCondition(t *testing.T) {
	for _, c := range []struct {
		cond, require string
		want          bool
		fails         bool
	}{
		{"tool:sh", "1", true, false},
		{"tool:encblk-no-such-tool", "", false, false},
		{"tool:encblk-no-such-tool", "1", false, true},
		{"exec:sh", "", false, true},
	} {
		t.Setenv(testutil.RequireToolsEnv, c.require)
		got, err := toolCondition(c.cond)
		if got != c.want || (err != nil) != c.fails {
			t.Errorf("[%s] with %s=%q: %v, %v", c.cond, testutil.RequireToolsEnv, c.require, got, err)
		}
	}
}

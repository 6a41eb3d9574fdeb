package e2e

import (
	"encoding/json"
	"testing"
)

// TestServeOffersCache: an encrypted volume is served with NBD_CMD_CACHE
// (the backing's ciphertext is prefetched), as nbdinfo sees it.
func TestServeOffersCache(t *testing.T) {
	require(t, nbdinfoTool)
	e := newEnv(t)
	key := e.keyFile("key")
	disk := e.format("disk.img", 20<<20, key)
	s := e.serve("nbd.sock", "--key-file", key, disk)
	var info struct {
		Exports []struct {
			CanCache bool `json:"can_cache"`
		} `json:"exports"`
	}
	if err := json.Unmarshal([]byte(tool(t, "nbdinfo", "--json", s.uri())), &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Exports) != 1 || !info.Exports[0].CanCache {
		t.Fatalf("nbdinfo: %+v, want one export that can cache", info)
	}
	s.stop()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/internal/backing"
	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/kek/passphrase"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/rotation"
)

func init() {
	subcommands = append(subcommands, newReencryptCmd)
	exitCodeMappers = append(exitCodeMappers, func(err error) (int, bool) {
		switch {
		case errors.Is(err, keyring.ErrReencryptInProgress):
			return exitBusy, true
		case errors.Is(err, keyring.ErrAlreadyLUKS), errors.Is(err, keyring.ErrReduceSize), errors.Is(err, keyring.ErrTooSmall):
			return exitUsage, true
		}
		return 0, false
	})
}

func newReencryptCmd(a *app) *cobra.Command {
	var (
		hdr        headerFlag
		t          targetFlags
		kf         kekFlags
		keyBits    int
		sectorSize int
		resume     bool
		initOnly   bool
		throttle   string
		hotZone    string
		encrypt    bool
		decrypt    bool
		reduce     string
		kdf        kdfFlags
	)
	cmd := &cobra.Command{
		Use:   "reencrypt TARGET",
		Short: "Replace the data key (DEK): every keyslot re-wrapped, the data rewritten (LUKS2 reencryption, as cryptsetup)",
		Long: `Reencrypt replaces the volume key (DEK) of TARGET with a new random one
and rewrites the data under it, zone by zone, in LUKS2's reencryption
format: cryptsetup 2.6 can resume what encblk leaves, and encblk what
cryptsetup leaves. Every keyslot is re-wrapped for the new key with its own
KEK, which must be given: the KEK (--key-file, --passphrase-file, --kmip or
the prompt) and, for keyslots it does not open, --extra-key-file and
--extra-passphrase-file (repeatable). When done, the old keyslots are wiped.

Each zone is protected by checksums in the header before it is rewritten,
so a crash or power loss at any moment leaves a volume that --resume
finishes. SIGINT or SIGTERM stop after the zone in progress.

A served volume is reencrypted by its server, online: the reencryption is
recorded in the header here, the server (sent the KEK, as by encblk unlock)
rewrites the data in the background while it serves, routing each request
to the old or the new key, and this command follows the progress. A server
that opens a volume whose header records a reencryption (interrupted by a
crash, by SIGKILL, or left by cryptsetup) recovers it and carries on.

--encrypt --reduce-device-size R turns TARGET, a file or block device
holding plaintext (a filesystem shrunk by R beforehand: its last R bytes
are given up), into a LUKS2 volume in place, as cryptsetup reencrypt
--encrypt --reduce-device-size does (LUKS2 "datashift"): the new header
(a random volume key, keyslot 0 for the KEK given as for format) takes the
first R/2 bytes, and the data moves R/2 bytes towards the end, encrypted
zone by zone from the end backward. R is a multiple of twice the sector
size (--sector-size, default 512), at most 1G; 32M is what cryptsetup
recommends, and it must leave room for the header (576K is the least
with the default 512-bit key). Offline only: the target must not be in use.
A crash or SIGKILL at any moment leaves a volume that --resume (or
cryptsetup reencrypt --resume-only) finishes; encblk --resume likewise
finishes cryptsetup's.

--encrypt --header FILE (no --reduce-device-size) encrypts the plaintext
on TARGET where it is, with a new detached header in FILE (created, mode
0600; it must not exist), as cryptsetup reencrypt --encrypt --header FILE
does: forward, zone by zone (--hotzone-size, default 64M), each zone's
plaintext hashed into FILE before it is rewritten (checksum resilience).
Either tool resumes the other's run (encblk reencrypt --resume --header
FILE TARGET; cryptsetup reencrypt --resume-only --header FILE TARGET).
Serve it with --header FILE:

  encblk reencrypt --encrypt --header disk.hdr --key-file k1 disk.img
  encblk serve --header disk.hdr --key-file k1 disk.img

--decrypt --header FILE turns TARGET back into plain data, in place, as
cryptsetup reencrypt --decrypt --header FILE does:
  - FILE does not exist: TARGET holds its header. The header is exported
    to FILE (created, mode 0600) and wiped from TARGET, and the data is
    decrypted and moved back to the start of TARGET (LUKS2
    "datashift-checksum": the first part of the data is copied over the
    old header, the rest decrypted forward in zones of the data offset,
    the copied part last, protected by checksums in FILE). TARGET ends
    holding the plaintext from offset 0 (a filesystem mounts as it was);
    its last data-offset bytes are overwritten with random bytes.
  - FILE is the detached header of the data device TARGET (data at offset
    0): the data is decrypted where it is (backward, checksum resilience).
At the end FILE holds a header with no keyslot. Either way a crash or
SIGKILL at any moment leaves a state that encblk reencrypt --resume
--header FILE TARGET (or cryptsetup reencrypt --resume-only --header FILE
TARGET, after cryptsetup repair when a zone was in progress) finishes, and
encblk finishes cryptsetup's. FILE existing but not a LUKS header, or a
header whose data is not at 0, is refused (exit 1); hw-opal volumes are
refused (exit 4): the drive holds that key. Offline only (a served TARGET:
exit 3):

  encblk reencrypt --decrypt --header disk.hdr --key-file k1 disk.img
  encblk reencrypt --resume --header disk.hdr --key-file k1 disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := args[0]
			extras := len(kf.extraKeyFiles)+len(kf.extraPassFiles) > 0
			switch {
			case decrypt && encrypt:
				return withExit(exitUsage, errors.New("--encrypt and --decrypt are exclusive"))
			case encrypt && (hotZone != "" && hdr.path == "" || extras):
				return withExit(exitUsage, errors.New("--hotzone-size, --extra-key-file and --extra-passphrase-file do not apply to --encrypt (its zones are the data shift; the new volume has one keyslot; --hotzone-size goes with --encrypt --header only)"))
			case decrypt && (keyBits != 0 || sectorSize != 0 || reduce != "" || kdf.changed() || extras):
				return withExit(exitUsage, errors.New("--key-size, --sector-size, --reduce-device-size, the PBKDF flags and --extra-key-file/--extra-passphrase-file do not apply to --decrypt (the result is plain data)"))
			}
			if decrypt {
				return decryptInPlace(cmd, a, target, t, hdr, kf, resume, initOnly, throttle, hotZone)
			}
			if encrypt {
				return encryptInPlace(cmd, a, target, t, hdr, kf, kdf, reduce, keyBits, sectorSize, resume, initOnly, throttle, hotZone)
			}
			if reduce != "" || kdf.changed() {
				return withExit(exitUsage, errors.New("--reduce-device-size and the PBKDF flags go with --encrypt (a reencryption keeps each keyslot's KDF)"))
			}
			var throttleRate, zone int64
			var err error
			if throttle != "" && throttle != "0" { // 0: no cap
				if throttleRate, err = parseSize(throttle); err != nil {
					return withExit(exitUsage, fmt.Errorf("--throttle: %w", err))
				}
			}
			if hotZone != "" {
				if zone, err = parseSize(hotZone); err != nil {
					return withExit(exitUsage, fmt.Errorf("--hotzone-size: %w", err))
				}
			}
			if keyBits != 0 && keyBits != 256 && keyBits != 512 {
				return withExit(exitUsage, fmt.Errorf("--key-size %d: aes-xts-plain64 takes 256 or 512 bits", keyBits))
			}
			if c, vol, err := t.client(cmd.Context(), target); err == nil {
				if sectorSize != 0 {
					return withExit(exitUsage, errors.New("--sector-size on a served volume: the block size its clients negotiated when they connected cannot change under them; stop the server and reencrypt offline"))
				}
				if resume || initOnly || hotZone != "" {
					return withExit(exitUsage, errors.New("a served volume is reencrypted by its server: --resume, --init-only and --hotzone-size do not apply (the server resumes by itself)"))
				}
				var rate *int64 // the server's default (serve --reencrypt-rate)
				if throttle != "" {
					rate = &throttleRate
				}
				return reencryptServed(cmd, a, c, vol, target, hdr, kf, keyBits, rate)
			} else if data, err := openUnserved(err, target); err != nil {
				return err
			} else {
				defer data.Close()
				return reencryptOffline(cmd, a, target, data, hdr, kf, keyBits, sectorSize, resume, initOnly, throttleRate, zone)
			}
		},
	}
	fs := cmd.Flags()
	hdr.register(fs)
	t.register(fs)
	kf.register(fs, "")
	kf.registerExtras(fs)
	fs.IntVarP(&keyBits, "key-size", "s", 0, "new volume key size in bits: 256 or 512 (default: unchanged)")
	fs.IntVar(&sectorSize, "sector-size", 0, "new encryption sector size: 512, 1024, 2048 or 4096 (default: unchanged)")
	fs.BoolVar(&resume, "resume", false, "continue an interrupted reencryption (encblk's or cryptsetup's)")
	fs.BoolVar(&initOnly, "init-only", false, "only record the reencryption in the metadata (and re-wrap the keyslots)")
	fs.StringVar(&throttle, "throttle", "", "cap the rewrite rate, bytes per second (K, M, G suffixes; 0: no cap); on a served volume it replaces the server's --reencrypt-rate for this reencryption")
	fs.StringVar(&hotZone, "hotzone-size", "", "largest zone rewritten per metadata commit (default 64M)")
	fs.BoolVar(&encrypt, "encrypt", false, "encrypt the plaintext on TARGET in place into a new LUKS2 volume (with --reduce-device-size: header on TARGET, data shifted; with --header FILE: header in FILE, data in place)")
	fs.BoolVar(&decrypt, "decrypt", false, "with --header FILE: decrypt TARGET in place (FILE new: TARGET's header is exported to it and the data moved to offset 0; FILE a detached header: the data stays)")
	fs.StringVar(&reduce, "reduce-device-size", "", "with --encrypt: bytes given up at the end of TARGET, half for the header, half the data shift (e.g. 32M)")
	kdf.register(fs)
	return cmd
}

// reencryptOffline runs or resumes a reencryption (or an encryption in
// place, resumed) of an unserved TARGET here, on data (opened for direct
// writes).
func reencryptOffline(cmd *cobra.Command, a *app, target string, data *backing.File, hdr headerFlag, kf kekFlags,
	keyBits, sectorSize int, resume, initOnly bool, throttleRate, zone int64) error {
	k, err := hdr.open(target, false)
	if err != nil {
		return err
	}
	defer k.Close()
	r, err := k.Reencryption()
	if err != nil {
		return err
	}
	switch {
	case r != nil && !resume:
		return fmt.Errorf("%w on %s (--resume continues it)", keyring.ErrReencryptInProgress, target)
	case r == nil && resume:
		return withExit(exitUsage, fmt.Errorf("%s: %w", target, keyring.ErrReencryptNotStarted))
	case resume && (keyBits != 0 || sectorSize != 0):
		return withExit(exitUsage, errors.New("--key-size and --sector-size are set when the reencryption starts, not on --resume"))
	}
	ids, destroy, err := kf.readAll(k, cmd.InOrStdin(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer destroy()
	opts := &keyring.ReencryptOptions{KeySize: keyBits / 8, SectorSize: sectorSize, HotZone: uint64(zone)}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if r == nil {
		if err := k.StartReencrypt(ctx, ids, opts); err != nil {
			return err
		}
		a.log.Info("reencryption recorded", "volume", k.UUID())
		if initOnly {
			fmt.Fprintf(cmd.OutOrStdout(), "reencryption of %s recorded; encblk reencrypt --resume (or cryptsetup reencrypt --resume-only) runs it\n", target)
			return nil
		}
	}
	rc, err := openOffline(ctx, k, ids, target, data, opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := runOffline(ctx, cmd, a, k, rc, target, uint64(throttleRate)); err != nil {
		return err
	}
	if r != nil && r.Mode != keyring.ReencryptModeReencrypt {
		return reportInPlace(cmd, r.Mode, target, hdr)
	}
	// A rotation policy's reencryption period counts from now.
	if err := rotation.RecordReencrypt(k, time.Now()); err != nil {
		a.log.Warn("reencryption finished, but recording its time in the rotation token failed", "err", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "reencrypted %s: new volume key; old keyslots %v wiped\n", target, rc.OldKeyslots())
	return nil
}

// openUnserved sorts the error of targetFlags.client for an offline
// operation: nil (not served) opens the backing, exclusively, for direct
// writes (zones go to the disk without filling the page cache; each is
// synced at once anyway); a backing another process holds is ErrBusy, a
// block device mounted or mapped (device-mapper) is ErrInUse.
func openUnserved(err error, target string) (*backing.File, error) {
	switch {
	case errors.Is(err, backing.ErrBusy):
		return nil, fmt.Errorf("%s is held by another encblk process (a reencryption, or a server whose control socket cannot be reached): %w", target, backing.ErrBusy)
	case !errors.Is(err, daemon.ErrNotServed):
		return nil, err
	}
	return backing.Open(target, backing.Options{Direct: true, Exclusive: true})
}

// openOffline opens the recorded reencryption of k for running here: reads
// go through the page cache (the data may be there already), writes
// straight to the disk.
func openOffline(ctx context.Context, k *keyring.Keyring, ids []keyring.Identity, target string, data *backing.File, opts *keyring.ReencryptOptions) (*keyring.Reencryptor, error) {
	rd, err := os.Open(target)
	if err != nil {
		return nil, err
	}
	rc, err := k.OpenReencryption(ctx, ids, cachedReads{rd, data}, uint64(data.Size()), opts)
	if err != nil {
		rd.Close()
		return nil, err
	}
	// rd stays open for the process's life (it ends with the command).
	return rc, nil
}

// runOffline runs rc to its end, audited, with progress; a SIGINT or
// SIGTERM (ctx) stops it cleanly after the zone in progress (exit 1).
func runOffline(ctx context.Context, cmd *cobra.Command, a *app, k *keyring.Keyring, rc *keyring.Reencryptor, target string, throttle uint64) error {
	rec := audit.Record{Event: audit.ReencryptStart, Volume: k.UUID(), Backing: target, Keyslot: -1}.Self()
	audit.Log(ctx, a.log, rec)
	err := rc.Run(ctx, &keyring.RunOptions{Throttle: throttle, Progress: newProgress(cmd.ErrOrStderr(), rc)})
	rec.Event, rec.Err = audit.ReencryptFinish, err
	if err != nil {
		rec.Event = audit.ReencryptStop
		if errors.Is(err, context.Canceled) {
			rec.Err = nil // a clean stop, resumable
		}
	}
	audit.Log(context.WithoutCancel(ctx), a.log, rec)
	if errors.Is(err, context.Canceled) {
		done, total := rc.Progress()
		fmt.Fprintf(cmd.ErrOrStderr(), "reencryption stopped at %d of %d bytes; encblk reencrypt --resume continues it\n", done, total)
		return withExit(exitUsage, errors.New("interrupted"))
	}
	return err
}

// encryptInPlace is reencrypt --encrypt: a plaintext TARGET becomes a
// LUKS2 volume in place (datashift, as cryptsetup). With --resume, or on
// a TARGET that records an encryption already, see reencrypt --resume.
func encryptInPlace(cmd *cobra.Command, a *app, target string, t targetFlags, hdr headerFlag, kf kekFlags, kdf kdfFlags,
	reduce string, keyBits, sectorSize int, resume, initOnly bool, throttle, hotZone string) error {
	switch {
	case hdr.path != "" && reduce != "":
		return withExit(exitUsage, errors.New("--reduce-device-size with a detached --header: the data stays where it is, nothing is given up (leave --reduce-device-size out)"))
	case resume:
		return withExit(exitUsage, errors.New("--resume continues an encryption without --encrypt: encblk reencrypt --resume TARGET"))
	case reduce == "" && hdr.path == "":
		return withExit(exitUsage, errors.New("--encrypt needs --reduce-device-size (e.g. 32M): the header takes half of it, the data moves by the other half"))
	case keyBits != 0 && keyBits != 256 && keyBits != 512:
		return withExit(exitUsage, fmt.Errorf("--key-size %d: aes-xts-plain64 takes 256 or 512 bits", keyBits))
	}
	var red int64
	var err error
	if hdr.path == "" {
		if red, err = parseSize(reduce); err != nil || red <= 0 {
			return withExit(exitUsage, fmt.Errorf("--reduce-device-size %q: want a size such as 32M", reduce))
		}
	}
	var throttleRate, zone int64
	if throttle != "" {
		if throttleRate, err = parseSize(throttle); err != nil {
			return withExit(exitUsage, fmt.Errorf("--throttle: %w", err))
		}
	}
	if hotZone != "" {
		if zone, err = parseSize(hotZone); err != nil {
			return withExit(exitUsage, fmt.Errorf("--hotzone-size: %w", err))
		}
	}
	params, err := kdf.params()
	if err != nil {
		return err
	}
	if keyBits == 0 {
		keyBits = 512
	}
	_, _, err = t.client(cmd.Context(), target)
	if err == nil {
		return withExit(exitBusy, fmt.Errorf("%s is served: encryption in place is an offline operation (and a served volume is LUKS already)", target))
	}
	data, err := openUnserved(err, target)
	if err != nil {
		return err
	}
	defer data.Close()
	if err := secmem.SetNonDumpable(); err != nil {
		return err
	}
	key, err := kf.read(cmd.InOrStdin(), cmd.ErrOrStderr(), true)
	if err != nil {
		return err
	}
	defer key.Destroy()
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	format := keyring.FormatOptions{KeySize: keyBits / 8, SectorSize: sectorSize, KDF: params}
	var k *keyring.Keyring
	if hdr.path != "" {
		k, err = encryptDetached(ctx, data, hdr.path, key, &format)
	} else {
		k, err = keyring.EncryptInPlace(ctx, data, uint64(data.Size()), key, &keyring.EncryptOptions{ReduceSize: uint64(red), Format: format})
	}
	if err != nil {
		return fmt.Errorf("%s: %w", target, err)
	}
	defer k.Close()
	a.log.Info("encryption in place recorded", "volume", k.UUID())
	if initOnly {
		with := ""
		if hdr.path != "" {
			with = " --header " + hdr.path
		}
		fmt.Fprintf(cmd.OutOrStdout(), "encryption of %s recorded; encblk reencrypt --resume%s (or cryptsetup reencrypt --resume-only%s) runs it\n", target, with, with)
		return nil
	}
	rc, err := openOffline(ctx, k, []keyring.Identity{key}, target, data, &keyring.ReencryptOptions{HotZone: uint64(zone)})
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := runOffline(ctx, cmd, a, k, rc, target, uint64(throttleRate)); err != nil {
		return err
	}
	return reportInPlace(cmd, keyring.ReencryptModeEncrypt, target, hdr)
}

// encryptDetached creates the header file path (mode 0600; it must not
// exist) and records in it the encryption of data where it is
// (keyring.EncryptDetached); the file is removed again when that fails.
func encryptDetached(ctx context.Context, data *backing.File, path string, key keyring.Recipient, format *keyring.FormatOptions) (*keyring.Keyring, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, withExit(exitUsage, fmt.Errorf("%s exists: --encrypt --header FILE writes a new header there", path))
	} else if err != nil {
		return nil, fmt.Errorf("create the header file: %w", err)
	}
	// f stays open for the keyring's life (the command's).
	k, err := keyring.EncryptDetached(ctx, f, data, uint64(data.Size()), key, format)
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return k, nil
}

// openToStart opens TARGET's header to start an operation on it: refused
// (ErrReencryptInProgress, with where) when one is recorded already; then
// the KEKs are read (kekFlags.readAll). The caller closes k and calls destroy.
func openToStart(cmd *cobra.Command, target string, hdr headerFlag, kf kekFlags, where string) (*keyring.Keyring, []keyring.Identity, func(), error) {
	k, err := hdr.open(target, false)
	if err != nil {
		return nil, nil, nil, err
	}
	fail := func(err error) (*keyring.Keyring, []keyring.Identity, func(), error) {
		k.Close()
		return nil, nil, nil, err
	}
	if r, err := k.Reencryption(); err != nil {
		return fail(err)
	} else if r != nil {
		return fail(fmt.Errorf("%w on %s %s", keyring.ErrReencryptInProgress, target, where))
	}
	ids, destroy, err := kf.readAll(k, cmd.InOrStdin(), cmd.ErrOrStderr())
	if err != nil {
		return fail(err)
	}
	return k, ids, destroy, nil
}

// reportInPlace prints the end of an encryption or decryption in place.
func reportInPlace(cmd *cobra.Command, mode, target string, hdr headerFlag) error {
	if mode == keyring.ReencryptModeDecrypt {
		fmt.Fprintf(cmd.OutOrStdout(), "decrypted %s in place: plain data; the header %s opens nothing now\n", target, hdr.path)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "encrypted %s in place: a LUKS2 volume\n", target)
	return nil
}

// decryptInPlace is reencrypt --decrypt --header FILE: TARGET becomes
// plain data in place. When FILE does not exist, TARGET holds its header:
// it is exported to FILE and the data moved to the start of TARGET
// (decryptShift); otherwise FILE is the detached header of the data
// device TARGET.
func decryptInPlace(cmd *cobra.Command, a *app, target string, t targetFlags, hdr headerFlag, kf kekFlags,
	resume, initOnly bool, throttle, hotZone string) error {
	switch {
	case hdr.path == "":
		return withExit(exitUsage, errors.New("--decrypt needs --header FILE: a new file that TARGET's header is exported to (the data then moves to the start of TARGET), or the detached header of TARGET"))
	case resume:
		return withExit(exitUsage, errors.New("--resume continues a decryption without --decrypt: encblk reencrypt --resume --header FILE TARGET"))
	}
	var throttleRate, zone int64
	var err error
	if throttle != "" {
		if throttleRate, err = parseSize(throttle); err != nil {
			return withExit(exitUsage, fmt.Errorf("--throttle: %w", err))
		}
	}
	if hotZone != "" {
		if zone, err = parseSize(hotZone); err != nil {
			return withExit(exitUsage, fmt.Errorf("--hotzone-size: %w", err))
		}
	}
	_, _, err = t.client(cmd.Context(), target)
	if err == nil {
		return withExit(exitBusy, fmt.Errorf("%s is served: decryption in place is an offline operation (stop the server first)", target))
	}
	data, err := openUnserved(err, target)
	if err != nil {
		return err
	}
	defer data.Close()
	opts := &keyring.ReencryptOptions{HotZone: uint64(zone)}
	if _, err := os.Stat(hdr.path); errors.Is(err, fs.ErrNotExist) {
		return decryptShift(cmd, a, target, data, hdr, kf, initOnly, uint64(throttleRate), opts)
	}
	k, err := hdr.open(target, false)
	if errors.Is(err, keyring.ErrNotLUKS) {
		return withExit(exitUsage, fmt.Errorf("%s exists and is not a LUKS header: --decrypt --header FILE exports TARGET's header to FILE, which must not exist yet (cryptsetup refuses it too), or reads a detached header from it", hdr.path))
	} else if err != nil {
		return err
	}
	r, _ := k.Reencryption()
	segs := k.Segments()
	k.Close()
	if r == nil && len(segs) > 0 && segs[0].Offset > 0 {
		return withExit(exitUsage, fmt.Errorf("%s exists and is a LUKS2 header whose data starts at %d, not a detached header (data at 0): to decrypt %s with its header exported, name a new file (cryptsetup refuses this too)", hdr.path, segs[0].Offset, target))
	}
	k, ids, destroy, err := openToStart(cmd, target, hdr, kf, "(--resume continues it)")
	if err != nil {
		return err
	}
	defer k.Close()
	defer destroy()
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := k.StartDecrypt(ctx, ids); err != nil {
		return err
	}
	a.log.Info("decryption in place recorded", "volume", k.UUID())
	if initOnly {
		fmt.Fprintf(cmd.OutOrStdout(), "decryption of %s recorded; encblk reencrypt --resume (or cryptsetup reencrypt --resume-only) runs it\n", target)
		return nil
	}
	rc, err := openOffline(ctx, k, ids, target, data, opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := runOffline(ctx, cmd, a, k, rc, target, uint64(throttleRate)); err != nil {
		return err
	}
	return reportInPlace(cmd, keyring.ReencryptModeDecrypt, target, hdr)
}

// decryptShift is reencrypt --decrypt --header NEWFILE of a TARGET that
// holds its header, as cryptsetup does it: the header is exported to
// NEWFILE (created here, mode 0600), TARGET's own header wiped, and the
// data decrypted and moved to the start of TARGET.
func decryptShift(cmd *cobra.Command, a *app, target string, data *backing.File, hdr headerFlag, kf kekFlags,
	initOnly bool, throttle uint64, opts *keyring.ReencryptOptions) error {
	k, ids, destroy, err := openToStart(cmd, target, headerFlag{}, kf, "(--resume continues it)")
	if err != nil {
		return err
	}
	defer k.Close()
	defer destroy()
	f, err := os.OpenFile(hdr.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create the header file: %w", err)
	}
	defer f.Close()
	// The file's name durable before TARGET's header is wiped.
	if err := syncDir(filepath.Dir(hdr.path)); err != nil {
		os.Remove(hdr.path)
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	nk, err := k.StartDecryptShift(ctx, ids, data, uint64(data.Size()), f, opts)
	if err != nil {
		if k.Reload() == nil {
			// TARGET still holds its header: nothing was lost.
			os.Remove(hdr.path)
			return fmt.Errorf("%s: %w", target, err)
		}
		return fmt.Errorf("%s: %w (its header is in %s: encblk header restore --header-backup-file %s %s puts it back)", target, err, hdr.path, hdr.path, target)
	}
	a.log.Info("decryption in place recorded", "volume", nk.UUID(), "header", hdr.path)
	if initOnly {
		fmt.Fprintf(cmd.OutOrStdout(), "decryption of %s recorded, its header exported to %s; encblk reencrypt --resume --header %s (or cryptsetup reencrypt --resume-only --header %s) runs it\n", target, hdr.path, hdr.path, hdr.path)
		return nil
	}
	rc, err := openOffline(ctx, nk, ids, target, data, opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := runOffline(ctx, cmd, a, nk, rc, target, throttle); err != nil {
		return err
	}
	return reportInPlace(cmd, keyring.ReencryptModeDecrypt, target, hdr)
}

// syncDir fsyncs a directory, so that a file just created in it stays.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// newProgress returns the progress callback of Run: a progress bar when
// w is a terminal, else one plain line per zone at most every few seconds.
func newProgress(w io.Writer, rc *keyring.Reencryptor) func(done, total uint64) {
	if f, ok := w.(*os.File); ok && passphrase.IsTerminal(f) {
		done, total := rc.Progress()
		bar := progressbar.NewOptions64(int64(total),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("reencrypt"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
		bar.Set64(int64(done))
		return func(done, total uint64) { bar.Set64(int64(done)) }
	}
	return newProgressPrinter(w, rc).update
}

// progressPrinter prints one line per zone at most every few seconds: bytes
// done, percent, rate and time left.
type progressPrinter struct {
	w        io.Writer
	start    time.Time
	last     time.Time
	done0    uint64
	interval time.Duration
}

func newProgressPrinter(w io.Writer, rc *keyring.Reencryptor) *progressPrinter {
	done, _ := rc.Progress()
	now := time.Now()
	return &progressPrinter{w: w, start: now, last: now, done0: done, interval: 2 * time.Second}
}

func (p *progressPrinter) update(done, total uint64) {
	now := time.Now()
	if now.Sub(p.last) < p.interval && done < total {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done-p.done0) / el
	}
	eta := "-"
	if rate > 0 {
		eta = (time.Duration(float64(total-done)/rate) * time.Second / time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "reencrypt: %5.1f%% %d/%d MiB %.1f MiB/s ETA %s\n",
		100*float64(done)/float64(max(total, 1)), done>>20, total>>20, rate/(1<<20), eta)
}

// reencryptServed records a reencryption in the header of a served volume
// and has its server run it online: the server is sent the KEK (as by
// encblk unlock), finds the reencryption, and rewrites the data in the
// background while it serves. The command then follows the progress
// until the end (Ctrl-C leaves the server running it).
func reencryptServed(cmd *cobra.Command, a *app, c *daemon.Client, vol, target string, hdr headerFlag, kf kekFlags,
	keyBits int, rate *int64) error {
	ctx := cmd.Context()
	k, ids, destroy, err := openToStart(cmd, target, hdr, kf, "run by its server")
	if err != nil {
		return err
	}
	defer k.Close()
	defer destroy()
	secret, err := serverSecret(ctx, k, ids[0])
	if err != nil {
		return err
	}
	defer secret.Destroy()
	if err := k.StartReencrypt(ctx, ids, &keyring.ReencryptOptions{KeySize: keyBits / 8}); err != nil {
		return err
	}
	a.log.Info("reencryption recorded", "volume", k.UUID())
	unlock := func() error { return c.Unlock(ctx, vol, secret.Bytes()) }
	if rate != nil {
		unlock = func() error { return c.UnlockRate(ctx, vol, secret.Bytes(), *rate) }
	}
	if err := unlock(); err != nil {
		return fmt.Errorf("reencryption recorded, but the server did not start it (it starts when the volume is next unlocked or served): %w", err)
	}
	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	w := cmd.ErrOrStderr()
	for {
		st, err := c.Status(sigCtx)
		if err != nil {
			if sigCtx.Err() != nil {
				fmt.Fprintf(w, "the server of %s continues the reencryption (encblk status shows it)\n", target)
				return nil
			}
			return fmt.Errorf("lost the server of %s (%w); the header records how far the reencryption got, and it carries on when the volume is next served", target, err)
		}
		var re *daemon.ReencryptionStatus
		found := false
		for _, v := range st.Volumes {
			if v.ID == vol || vol == "" {
				re, found = v.Reencryption, true
			}
		}
		switch {
		case !found:
			return fmt.Errorf("the server no longer serves %s", target)
		case re == nil:
			// Over, or never started: the header says which.
			if err := k.Reload(); err != nil {
				return err
			}
			if r, _ := k.Reencryption(); r != nil {
				return fmt.Errorf("reencryption recorded, but the server of %s is not running it (it starts when the volume is next served or unlocked)", target)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reencrypted %s online: new volume key\n", target)
			return nil
		case re.State != "running":
			return fmt.Errorf("online reencryption of %s %s at %.1f%%: see the server's log", target, re.State, re.Percent)
		}
		fmt.Fprintf(w, "reencrypt: %5.1f%% %d/%d MiB %.1f MiB/s ETA %s (online)\n", re.Percent, re.Done>>20, re.Total>>20,
			re.Rate/(1<<20), time.Duration(re.ETA)*time.Second)
		select {
		case <-sigCtx.Done():
			fmt.Fprintf(w, "the server of %s continues the reencryption (encblk status shows it)\n", target)
			return nil
		case <-time.After(time.Second):
		}
	}
}

// cachedReads is a data device that reads through one descriptor (the
// page cache) and writes and syncs through another (direct I/O).
type cachedReads struct {
	r io.ReaderAt
	keyring.DataDevice
}

func (c cachedReads) ReadAt(p []byte, off int64) (int, error) { return c.r.ReadAt(p, off) }

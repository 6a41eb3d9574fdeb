package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/encblk/encblk/internal/audit"
	"github.com/encblk/encblk/internal/daemon"
	"github.com/encblk/encblk/internal/secmem"
	"github.com/encblk/encblk/pkg/keyring"
	"github.com/encblk/encblk/pkg/sed"
	"github.com/encblk/encblk/pkg/sed/opalvolume"
)

// opalTargetFlags let the top-level unlock, lock, rotate and status act
// on a LUKS2 hw-opal or hw-opal-crypt volume: a self-encrypting drive
// whose data segment is a locking range (see package opalvolume). Such a
// TARGET is the drive itself; its header is on it or in --header.
//
// encblk serve does not serve these volumes (the drive does the
// encryption; the dm-crypt layer of hw-opal-crypt is cryptsetup's), so
// the commands act on the drive directly, never through a server.
type opalTargetFlags struct {
	sf  sedFlags   // hidden --simulator; --admin-key-file for lock and status
	hdr headerFlag // --header
	kek kekFlags   // lock's KEK (unlock and rotate have their own)
}

// register adds --header and the hidden --simulator; adminKey adds
// --admin-key-file, kek the KEK flags.
func (f *opalTargetFlags) register(fs *pflag.FlagSet, adminKey, kek bool) {
	f.sf.register(fs, adminKey)
	f.hdr.register(fs)
	if kek {
		f.kek.register(fs, "")
	}
}

// opalTarget is the header of a hw-opal volume, opened read-only.
type opalTarget struct {
	kr      *keyring.Keyring
	seg     keyring.Segment
	hdrPath string
}

func (v *opalTarget) rangeN() uint8 { return uint8(v.seg.OpalSegmentNumber) }

// open reads TARGET's header (or --header) once for the whole command,
// read-only; the caller closes kr. kr is nil when there is no TARGET or,
// without --header and --simulator, when no header can be read there. ov
// is the hw-opal volume TARGET (ov.kr is kr), or nil when TARGET is no
// such volume: the command then goes on with the software volume, whose
// header kr is. With --header or --simulator TARGET must be one.
func (f *opalTargetFlags) open(target string) (kr *keyring.Keyring, ov *opalTarget, err error) {
	explicit := f.hdr.path != "" || f.sf.simulator
	if target == "" {
		if explicit {
			return nil, nil, withExit(exitUsage, errors.New("--header and --simulator need a TARGET device"))
		}
		return nil, nil, nil
	}
	kr, err = f.hdr.open(target, true)
	if err != nil {
		if explicit {
			return nil, nil, err
		}
		return nil, nil, nil
	}
	if ov, err = f.of(target, kr); err != nil {
		kr.Close()
		return nil, nil, err
	}
	return kr, ov, nil
}

// of is the hw-opal volume TARGET whose header kr is, or nil when it is
// no such volume (an error with --header or --simulator).
func (f *opalTargetFlags) of(target string, kr *keyring.Keyring) (*opalTarget, error) {
	seg, err := opalvolume.Segment(kr)
	if err != nil {
		if err == opalvolume.ErrNotOpalVolume && f.hdr.path == "" && !f.sf.simulator {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %w", target, err)
	}
	return &opalTarget{kr: kr, seg: seg, hdrPath: f.hdr.location(target)}, nil
}

// unlock unlocks the locking range with a keyslot opened by k.
func (f *opalTargetFlags) unlock(ctx context.Context, out io.Writer, target string, v *opalTarget, k kek) error {
	d, err := f.sf.openDrive(ctx, target)
	if err != nil {
		return err
	}
	defer d.close()
	dek, err := opalvolume.Unlock(ctx, d.dev, v.kr, k)
	if err != nil {
		return err
	}
	dek.Destroy()
	fmt.Fprintf(out, "%s: locking range %d unlocked (%s)\n", target, v.rangeN(), v.seg.Type)
	return nil
}

// lock locks the locking range: with the admin key (Admin1 may lock any
// range) or with the range key from a keyslot opened by the KEK. Either
// way the drive forgets the range's media key until the next unlock.
func (f *opalTargetFlags) lock(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, target string, v *opalTarget) error {
	if f.sf.adminKeyFile != "" && f.kek.given() {
		return withExit(exitUsage, errors.New("--admin-key-file excludes the KEK flags"))
	}
	if err := secmem.SetNonDumpable(); err != nil {
		return err
	}
	var admin *secmem.Buffer
	var k kek
	var err error
	if f.sf.adminKeyFile != "" {
		if admin, err = f.sf.readAdminKey("admin-key-file"); err != nil {
			return err
		}
		defer admin.Destroy()
	} else {
		if k, err = f.kek.readFor(v.kr, stdin, stderr, false); err != nil {
			return err
		}
		defer k.Destroy()
	}
	d, err := f.sf.openDrive(ctx, target)
	if err != nil {
		return err
	}
	defer d.close()
	if admin != nil {
		err = d.dev.SetLock(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: admin.Bytes()}, v.rangeN(), sed.Locked)
	} else {
		err = opalvolume.LockWithKEK(ctx, d.dev, v.kr, k)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: locking range %d locked (%s)\n", target, v.rangeN(), v.seg.Type)
	return nil
}

// rotateNote is what rotate adds for a hw-opal volume. In cryptsetup's
// layout the range key is the first opal_key_size bytes of the volume
// key, so a KEK rotation (a keyslot change) leaves it as it is.
func rotateNote(v *opalTarget) string {
	return fmt.Sprintf("locking range %d key unchanged: it is part of the volume key, which a KEK rotation keeps", v.rangeN())
}

// status describes a hw-opal volume: its header, plus the drive's Level 0
// Discovery and, with --admin-key-file, the locking range read from the
// drive.
func (f *opalTargetFlags) status(ctx context.Context, target string, v *opalTarget) (vs daemon.VolumeStatus, err error) {
	if vs, err = daemon.HeaderStatus(v.hdrPath, v.kr); err != nil {
		return vs, err
	}
	vs.Backing = target
	// The volume key is the range key, then (hw-opal-crypt) the dm-crypt
	// key: the cipher line shows the latter, the opal lines the former.
	if v.seg.Type == "hw-opal" {
		vs.Cipher = "none in software (the drive encrypts)"
	} else {
		vs.KeyBits -= 8 * v.seg.OpalKeySize
	}
	var admin *secmem.Buffer
	if f.sf.adminKeyFile != "" {
		if admin, err = f.sf.readAdminKey("admin-key-file"); err != nil {
			return vs, err
		}
		defer admin.Destroy()
	}
	d, err := f.sf.openDrive(ctx, target)
	if err != nil {
		return vs, err
	}
	defer d.close()
	os := &daemon.OpalStatus{SegmentType: v.seg.Type, Range: v.rangeN(), KeyBytes: v.seg.OpalKeySize, BlockSize: 512}
	if l := d.dev.Discovery.Locking; l != nil {
		os.LockingEnabled, os.AnyRangeLocked = l.LockingEnabled, l.Locked
	}
	if g := d.dev.Discovery.Geometry; g != nil && g.LogicalBlockSize >= 512 {
		os.BlockSize = g.LogicalBlockSize
	}
	if admin != nil {
		rs, err := d.dev.Range(ctx, sed.Credential{Authority: sed.AuthorityAdmin1, PIN: admin.Bytes()}, v.rangeN())
		if err != nil {
			return vs, err
		}
		os.RangeRead, os.StartBlock, os.LengthBlock, os.State = true, rs.Start, rs.Length, rs.State().String()
	}
	vs.Opal = os
	return vs, nil
}

// printOpalStatus adds the drive's side of a hw-opal volume to status.
func printOpalStatus(w *tabwriter.Writer, o *daemon.OpalStatus) {
	if o == nil {
		return
	}
	fmt.Fprintf(w, "opal segment:\t%s on locking range %d, %d-bit range key (the volume key's first bytes)\n", o.SegmentType, o.Range, 8*o.KeyBytes)
	fmt.Fprintf(w, "drive locking:\tenabled %s, a range locked %s\n", yn(o.LockingEnabled), yn(o.AnyRangeLocked))
	if !o.RangeRead {
		fmt.Fprintf(w, "range state:\tunknown (reading the range takes --admin-key-file)\n")
		return
	}
	fmt.Fprintf(w, "range state:\t%s\n", o.State)
	fmt.Fprintf(w, "range:\tblocks %d+%d of %d bytes (%d bytes at offset %d)\n",
		o.StartBlock, o.LengthBlock, o.BlockSize, o.LengthBlock*uint64(o.BlockSize), o.StartBlock*uint64(o.BlockSize))
}

// auditOpal records a lock or unlock of a hw-opal volume's locking range,
// which the command does itself (no server is involved).
func auditOpal(ctx context.Context, a *app, event, target string, v *opalTarget, err error) {
	audit.Log(ctx, a.log, audit.Record{Event: event, Volume: v.kr.UUID(), Backing: target, Keyslot: -1, Err: err}.Self())
}

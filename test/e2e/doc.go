// Package e2e holds encblk's end-to-end tests: the encblk binary, served
// volumes, and real clients (nbdcopy, nbdfuse, qemu-io), the kernel's loop
// devices and ext4, cryptsetup and OpenSSL.
package e2e

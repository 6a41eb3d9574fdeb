/*
 * opalctl — TEST-ONLY: drives the Linux kernel's own Opal client
 * (block/sed-opal.c) through the IOC_OPAL_* ioctls of <linux/sed-opal.h>,
 * for test/vm's sed-nvme-ioctl scenario. Compiled in the guest with the
 * host's gcc against the uapi header, so the structs are the kernel's.
 *
 *   opalctl DEV status
 *   opalctl DEV take-ownership PW        SID PIN := PW (from the MSID)
 *   opalctl DEV activate PW              activate the Locking SP (Admin1 PIN := PW)
 *   opalctl DEV setup-range PW LR START LEN   as Admin1: bounds, read/write lock enabled
 *   opalctl DEV lock|unlock PW LR        as Admin1
 *   opalctl DEV revert PW                RevertTPer as SID (all data gone)
 *
 * Exit status 0 on success; the ioctl's return (a TCG status, or an errno)
 * is printed otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/sed-opal.h>

static void key(struct opal_key *k, const char *pw, int lr)
{
	memset(k, 0, sizeof(*k));
	k->lr = lr;
	k->key_len = strlen(pw);
	memcpy(k->key, pw, k->key_len);
}

static int check(const char *what, int r)
{
	if (r < 0) {
		fprintf(stderr, "opalctl: %s: %s\n", what, strerror(errno));
		return 1;
	}
	if (r > 0) {
		fprintf(stderr, "opalctl: %s: TCG method status 0x%02x\n", what, r);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: opalctl DEV status|take-ownership|activate|setup-range|lock|unlock|revert ...\n");
		return 2;
	}
	int fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	const char *op = argv[2], *pw = argc > 3 ? argv[3] : "";
	if (!strcmp(op, "status")) {
		struct opal_status st = {0};
		if (ioctl(fd, IOC_OPAL_GET_STATUS, &st) < 0) {
			perror("IOC_OPAL_GET_STATUS");
			return 1;
		}
		printf("supported %d locking-supported %d locking-enabled %d locked %d\n",
		       !!(st.flags & OPAL_FL_SUPPORTED), !!(st.flags & OPAL_FL_LOCKING_SUPPORTED),
		       !!(st.flags & OPAL_FL_LOCKING_ENABLED), !!(st.flags & OPAL_FL_LOCKED));
		return 0;
	}
	if (!strcmp(op, "take-ownership")) {
		struct opal_key k;
		key(&k, pw, 0);
		return check(op, ioctl(fd, IOC_OPAL_TAKE_OWNERSHIP, &k));
	}
	if (!strcmp(op, "activate")) {
		struct opal_lr_act a;
		memset(&a, 0, sizeof(a));
		key(&a.key, pw, 0);
		a.num_lrs = 1; /* the global range; single-user mode (sum) off */
		return check(op, ioctl(fd, IOC_OPAL_ACTIVATE_LSP, &a));
	}
	if (!strcmp(op, "revert")) {
		struct opal_key k;
		key(&k, pw, 0);
		return check(op, ioctl(fd, IOC_OPAL_REVERT_TPR, &k));
	}
	if (argc < 5)
		return 2;
	int lr = atoi(argv[4]);
	if (!strcmp(op, "setup-range") && argc == 7) {
		struct opal_user_lr_setup s;
		memset(&s, 0, sizeof(s));
		s.range_start = strtoull(argv[5], NULL, 0);
		s.range_length = strtoull(argv[6], NULL, 0);
		s.RLE = s.WLE = 1;
		s.session.who = OPAL_ADMIN1;
		key(&s.session.opal_key, pw, lr);
		return check(op, ioctl(fd, IOC_OPAL_LR_SETUP, &s));
	}
	if (!strcmp(op, "lock") || !strcmp(op, "unlock")) {
		struct opal_lock_unlock l;
		memset(&l, 0, sizeof(l));
		l.session.who = OPAL_ADMIN1;
		l.l_state = !strcmp(op, "lock") ? OPAL_LK : OPAL_RW;
		key(&l.session.opal_key, pw, lr);
		return check(op, ioctl(fd, IOC_OPAL_LOCK_UNLOCK, &l));
	}
	fprintf(stderr, "opalctl: unknown operation %s\n", op);
	return 2;
}

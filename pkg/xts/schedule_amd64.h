// Offsets of the fields of schedule (schedule_amd64.go); TestScheduleLayout
// keeps them in step with the Go struct.
#define KS_ENC 0
#define KS_DEC 240
#define KS_TWEAK 480
#define KS_ENC0 720
#define KS_DEC0 784
#define KS_TWEAK0 848
#define KS_ROUNDS 912

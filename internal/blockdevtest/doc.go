// Package blockdevtest holds checks that any blockdev.Device can be put
// through, and an in-memory device that takes only whole blocks: a
// model-checked request stream (the body of fuzz targets), concurrent
// overlapping writers checked for lost updates.
package blockdevtest

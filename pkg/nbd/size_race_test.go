//go:build race

package nbd_test

// nbdcopySize is smaller under the race detector, which slows the server
// about tenfold; 64 MiB still spans many requests on every connection.
const nbdcopySize = 64 << 20

package nbd

import "time"

// BlockingConnsInUse is how many of s's connections run on a blocking
// socket now (see sockConn), for the external tests.
func BlockingConnsInUse(s *Server) int64 { return s.blocking.Load() }

// SetRefusalLogEvery sets the shortest time between two log lines about
// refused connections (see refusalLog).
func SetRefusalLogEvery(s *Server, d time.Duration) { s.refusals.every = d }

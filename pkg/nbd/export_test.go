package nbd

// BlockingConnsInUse is how many of s's connections run on a blocking
// socket now (see sockConn), for the external tests.
func BlockingConnsInUse(s *Server) int64 { return s.blocking.Load() }

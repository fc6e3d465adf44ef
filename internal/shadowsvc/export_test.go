package shadowsvc

import "github.com/corral-iot/corral/internal/shadow"

// Cached says whether s keeps k's stored form for its next write, and
// whether parsed too.
func Cached(s *Service, k shadow.Key) (cached, parsed bool) {
	_, _, parsed, cached = s.docs.get(k)
	return cached, parsed
}

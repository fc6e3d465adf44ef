package shadow

// ValidName reports whether name may name a shadow: [$a-zA-Z0-9:_-]{1,64}.
// The classic shadow has no name; topics and REST check named ones with it.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '$', c == ':', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

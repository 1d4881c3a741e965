//go:build !unix

package spec

// trustedPath: without Unix ownership to check, the cache is not used.
func trustedPath(path string, dir bool) bool { return false }

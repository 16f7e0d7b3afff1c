// Package version holds the build's version, set with -ldflags -X.
package version

// Version is the release this binary was built from.
var Version = "dev"

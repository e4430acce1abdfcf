// Package nodoc has a doc comment only in a test file, which does not count.
package nodoc

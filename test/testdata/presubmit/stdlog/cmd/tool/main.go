// Command tool is a presubmit fixture: cmd/ may use the log package.
package main

import "log"

func main() { log.Print("ok") }

package main

import (
	"context"
	"errors"
	"io"
)

// Placeholders replaced as the subcommands land.
func runRun(context.Context, []string, io.Writer, io.Writer) error      { return errors.New("not yet") }
func runDemo(context.Context, []string, io.Writer, io.Writer) error     { return errors.New("not yet") }

package main

import (
	"context"
	"errors"
	"io"
)

func runEmulate(context.Context, []string, io.Writer, io.Writer) error { return errors.New("not yet") }

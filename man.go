package main

import (
	_ "embed"
	"fmt"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"
)

// readme gives the man page the README's table of how the mounted tree
// behaves, so the two never differ.
//
//go:embed README.md
var readme string

func manCommand(c *cli.Context) error {
	page, err := manPage(c.App)
	if err != nil {
		return err
	}
	fmt.Print(page)
	return nil
}

// manPage renders vdflat(1) from the CLI definition, the README's
// behaviour table and the examples.
func manPage(app *cli.App) (string, error) {
	md, err := app.ToMarkdown()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%% %s 1\n\n%s\n", strings.ToUpper(app.Name), md)
	b.WriteString("\n# THE MOUNTED TREE\n\n")
	for _, row := range markdownTable(readme, "## Behaviour of the mounted tree") {
		fmt.Fprintf(&b, "%s\n: %s\n\n", row[0], row[1])
	}
	b.WriteString("# EXAMPLES\n\n")
	keys := []string{""}
	for _, c := range app.Commands {
		keys = append(keys, c.Name)
	}
	for _, k := range keys {
		if ex := examples[k]; ex != "" {
			fmt.Fprintf(&b, "```\n%s\n```\n\n", ex)
		}
	}
	b.WriteString("# SEE ALSO\n\n**fusermount3**(1), **qemu-img**(1), **ewfexport**(1), **fls**(1)\n")
	return string(md2man.Render([]byte(b.String()))), nil
}

// markdownTable returns the body rows of the first table after heading
// in doc, each as its two first cells.
func markdownTable(doc, heading string) [][2]string {
	_, section, _ := strings.Cut(doc, "\n"+heading+"\n")
	var rows [][2]string
	header := true
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			return rows
		case strings.HasPrefix(line, "|---"):
			header = false
		case strings.HasPrefix(line, "| ") && !header:
			// Cells are split at " | ": a "|" inside code has no spaces around it.
			cells := strings.Split(strings.Trim(line, "| "), " | ")
			if len(cells) >= 2 {
				rows = append(rows, [2]string{cells[0], cells[1]})
			}
		}
	}
	return rows
}

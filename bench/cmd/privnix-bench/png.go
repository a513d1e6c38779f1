package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
)

var (
	colWhite = color.RGBA{255, 255, 255, 255}
	colBlack = color.RGBA{0, 0, 0, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	colGood  = color.RGBA{60, 160, 80, 255}
	colBad   = color.RGBA{210, 70, 60, 255}
	colNA    = color.RGBA{170, 170, 170, 255}
	colLine  = color.RGBA{40, 60, 200, 255}
)

// digits is a 3×5 bitmap font for 0-9, '.' and '>' (each row 3 bits).
var digits = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '>': {4, 2, 1, 2, 4},
}

// text draws s with the digit font at (x, y), scale px per dot.
func text(img *image.RGBA, x, y, scale int, s string, c color.Color) {
	for _, r := range s {
		g, ok := digits[r]
		if ok {
			for row := range 5 {
				for col := range 3 {
					if g[row]&(4>>col) != 0 {
						fill(img, x+col*scale, y+row*scale, scale, scale, c)
					}
				}
			}
		}
		x += 4 * scale
	}
}

func textWidth(s string, scale int) int { return len([]rune(s))*4*scale - scale }

func fill(img *image.RGBA, x, y, w, h int, c color.Color) {
	draw.Draw(img, image.Rect(x, y, x+w, y+h), &image.Uniform{c}, image.Point{}, draw.Src)
}

// writePNG draws one bar per workload (its ratio privnix/nix-daemon), a line
// at 1.0, y labels, and the workload's number under each bar (see the legend
// in results.md).
func writePNG(path string, results []*Result) error {
	const (
		left, right, top, bottom = 50, 20, 20, 40
		barW, gap, plotH         = 26, 14, 300
	)
	n := max(len(results), 1)
	w := left + right + n*(barW+gap)
	h := top + plotH + bottom
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(img, 0, 0, w, h, colWhite)
	ymax := 2.0
	for _, r := range results {
		if r.Ratio != nil {
			ymax = math.Max(ymax, math.Ceil(*r.Ratio*1.1*2)/2)
		}
	}
	ymax = math.Min(ymax, 10)
	step := 0.5
	if ymax > 4 {
		step = 1
	}
	yOf := func(v float64) int { return top + plotH - int(math.Round(v/ymax*plotH)) }
	for v := 0.0; v <= ymax+1e-9; v += step {
		y := yOf(v)
		fill(img, left, y, w-left-right, 1, colGrid)
		label := fmt.Sprintf("%.1f", v)
		text(img, left-8-textWidth(label, 2), y-5, 2, label, colBlack)
	}
	fill(img, left, top, 1, plotH+1, colBlack)
	fill(img, left, top+plotH, w-left-right, 1, colBlack)
	for i, r := range results {
		x := left + gap/2 + i*(barW+gap)
		switch {
		case r.Ratio == nil:
			fill(img, x, yOf(0)-6, barW, 6, colNA)
		default:
			v := *r.Ratio
			c := colGood
			if v > 1 {
				c = colBad
			}
			y := yOf(math.Min(v, ymax))
			fill(img, x, y, barW, top+plotH-y, c)
			if v > ymax {
				text(img, x+barW/2-5, top+2, 2, ">", colWhite)
			}
		}
		label := fmt.Sprint(i + 1)
		text(img, x+barW/2-textWidth(label, 2)/2, top+plotH+10, 2, label, colBlack)
	}
	fill(img, left, yOf(1)-1, w-left-right, 3, colLine)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

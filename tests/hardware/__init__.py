"""Tests of the hardware layer on gpiozero MockFactory pins and wire-protocol fakes."""

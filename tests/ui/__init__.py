"""Tests of console.ui: the console driven through Textual's Pilot against the local fleet, snapshots, the view model."""

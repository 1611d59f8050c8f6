//! `landauer report`: one self-contained HTML file for a trace or a sweep.

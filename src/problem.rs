//! What a pure parser returns besides its value: the lines it could not use. Every parser of text
//! from the host (counter tables, sysctl.d files) reports problems this way and goes on, so one bad
//! line never hides the rest of a file.

/// A line a parser could not use, 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LineProblem {
    pub line: usize,
    pub problem: String,
}

/// What a parser extracted, plus the lines it had to skip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed<T> {
    pub value: T,
    pub problems: Vec<LineProblem>,
}

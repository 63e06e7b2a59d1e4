//! Output of the one-shot commands (`import`, `check`, `quarantine`) on
//! stdout. A closed pipe (`relais import … | head`) is not an error: the
//! output is dropped instead of panicking the way `println!` does.

use std::io::Write;

/// Writes `args` to stdout; errors (EPIPE) are ignored.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|_| out.flush());
}

/// Like `println!`, but never panics when stdout is closed.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::console::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Like `print!`, but never panics when stdout is closed.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::console::write(format_args!($($arg)*))
    };
}

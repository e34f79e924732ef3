//! Terminal geometry and line wrapping for human output (pure, except [`terminal_width`]).
//!
//! Text wraps to the terminal's width with an 80-column floor; when stdout is not a terminal
//! (piped, redirected) lines are kept whole so that `grep` and scripts see one line per fact.

use std::io::IsTerminal;

/// The narrowest width text is wrapped to, however narrow the terminal.
pub const MIN_WIDTH: usize = 80;

/// The width to wrap stdout's text to: `None` when stdout is not a terminal. `COLUMNS`, when set
/// to a number, wins over the terminal's size (as for kubectl's own tables).
pub fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok());
    let size = terminal_size::terminal_size().map(|(w, _)| usize::from(w.0));
    Some(columns.or(size).unwrap_or(MIN_WIDTH).max(MIN_WIDTH))
}

/// `text` wrapped to `width` columns (ANSI styles take no width), the first line after
/// `first`, the others after `rest`; words are never broken. `None` keeps one line.
pub fn wrap(text: &str, width: Option<usize>, first: &str, rest: &str) -> String {
    let Some(width) = width else {
        return format!("{first}{text}");
    };
    let options = textwrap::Options::new(width)
        .initial_indent(first)
        .subsequent_indent(rest)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        // Fill each line as far as it goes, as a terminal reader expects (not balanced lines).
        .wrap_algorithm(textwrap::WrapAlgorithm::FirstFit);
    textwrap::fill(text, options)
}

/// A shell command wrapped with ` \` continuations, so that the wrapped lines still paste as one
/// command. A command with quotes, a pipe or a comment is kept on one line: a continuation
/// inside them would change what the shell runs.
pub fn wrap_command(command: &str, width: Option<usize>, indent: &str) -> String {
    let Some(width) = width else {
        return format!("{indent}{command}");
    };
    if command.contains(['\'', '"', '|', '#', '\\']) || indent.len() + command.len() <= width {
        return format!("{indent}{command}");
    }
    let rest = format!("{indent}    ");
    let mut lines: Vec<String> = vec![indent.to_string()];
    for word in command.split(' ').filter(|w| !w.is_empty()) {
        let line = lines.last_mut().expect("at least one line");
        let fresh = line.trim().is_empty();
        // Room for the word, a space before it and the " \" that ends a continued line.
        if !fresh && line.len() + 1 + word.len() + 2 > width {
            line.push_str(" \\");
            lines.push(format!("{rest}{word}"));
        } else {
            if !fresh {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

/// Rows as kubectl prints them: each column as wide as its widest cell, three spaces apart,
/// each line after `indent` and without trailing spaces. The first row is the header.
pub fn table<R: AsRef<[String]>>(rows: &[R], indent: &str) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.as_ref().iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(format!("{indent}{}", cells.join("   ")).trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_each_column_to_its_widest_cell() {
        let rows = [
            ["NAME", "STATUS", "NOTE"].map(String::from),
            ["payments-0", "pass", ""].map(String::from),
            ["db", "undetermined", "no agent"].map(String::from),
        ];
        assert_eq!(
            table(&rows, " "),
            " NAME         STATUS         NOTE\n payments-0   pass\n db           undetermined   no agent\n"
        );
    }

    #[test]
    fn wrapped_lines_fit_the_width_and_keep_words_whole() {
        let text = "ingress to shop/payments-0 (10.244.2.2:8080) denied: shop/payments-0 is isolated by shop/payments-ingress; no rule allows from shop/checkout on 8080/TCP";
        for width in [80, 120] {
            let out = wrap(text, Some(width), " ✗ network-policy  ", "                   ");
            for line in out.lines() {
                assert!(line.chars().count() <= width, "{line:?} is wider than {width}");
            }
            let words: Vec<&str> = out.split_whitespace().collect();
            assert!(words.contains(&"shop/payments-ingress;"), "{out}");
            assert_eq!(out.split_whitespace().skip(2).collect::<Vec<_>>().join(" "), text);
        }
    }

    #[test]
    fn without_a_terminal_a_line_is_kept_whole() {
        let text = "a ".repeat(200);
        assert_eq!(wrap(&text, None, "> ", "  ").lines().count(), 1);
    }

    #[test]
    fn a_wrapped_command_continues_with_backslashes_and_keeps_every_word() {
        let command = "kubectl --context lab-cluster-with-a-long-name --kubeconfig /home/someone/.kube/lab-config -n shop get networkpolicy payments-ingress -o yaml";
        let out = wrap_command(command, Some(80), "   ");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.len() > 1, "{out}");
        for line in &lines[..lines.len() - 1] {
            assert!(line.ends_with(" \\"), "{line:?}");
        }
        for line in &lines {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
        let rejoined = out.replace(" \\\n", " ");
        assert_eq!(rejoined.split_whitespace().collect::<Vec<_>>().join(" "), command);
    }

    #[test]
    fn a_command_with_quotes_or_a_pipe_is_never_split() {
        let command = format!(
            "kubectl get svc -A -o wide | grep -e {}",
            "10.96.0.1 -e ".repeat(10)
        );
        assert_eq!(wrap_command(&command, Some(80), "   ").lines().count(), 1);
    }
}

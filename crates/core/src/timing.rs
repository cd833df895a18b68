//! The text of `rag.search_timing`'s NOTICE: a search's phases in the order they ran, in milliseconds.

use std::time::Duration;

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `"{function} timing (ms): a 2.00, b 0.25; total 3.00"`. A phase met twice is summed where it first
/// appeared, so a loop's phases print once.
pub fn render(function: &str, phases: &[(&str, Duration)], total: Duration) -> String {
    let mut merged: Vec<(&str, Duration)> = Vec::new();
    for (name, d) in phases {
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += *d,
            None => merged.push((name, *d)),
        }
    }
    let mut parts: Vec<String> = merged.iter().map(|(n, d)| format!("{n} {}", ms(*d))).collect();
    let total = format!("total {}", ms(total));
    if parts.is_empty() {
        return format!("{function} timing (ms): {total}");
    }
    if let Some(last) = parts.last_mut() {
        last.push(';');
    }
    format!("{function} timing (ms): {} {total}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_print_in_order_and_repeats_are_summed() {
        let d = Duration::from_micros;
        let text = render("rag.x", &[("a", d(1500)), ("b", d(250)), ("a", d(500))], d(3000));
        assert_eq!(text, "rag.x timing (ms): a 2.00, b 0.25; total 3.00");
    }

    #[test]
    fn no_phase_still_gives_the_total() {
        assert_eq!(render("rag.y", &[], Duration::from_micros(10)), "rag.y timing (ms): total 0.01");
    }
}

//! Classifier tests over real-world evidence forms.

use super::*;

fn d(s: &str) -> Date {
    parse_iso(s).unwrap()
}

fn classify(input: &str, date: &str) -> Classification {
    classify_bytes(input.as_bytes(), d(date), &SupportOverrides::new()).unwrap()
}

#[test]
fn placeholder_compiles() {
    let c = classify("220 mx.example.com ESMTP Postfix\r\n", "2024-01-01");
    assert_eq!(c.product, Product::Postfix);
}

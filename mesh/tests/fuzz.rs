//! The fuzzing benchmark (`mesh/examples/fuzz.rs`) in short: every decoder of untrusted bytes,
//! 20 000 generated and mutated inputs each, no panic, no input that takes a second.

#[path = "../examples/fuzz.rs"]
mod fuzz;

#[test]
fn the_decoders_of_untrusted_bytes_refuse_garbage_without_panicking() {
    let outcomes = fuzz::run_all(20_000, 0x7e57);
    assert_eq!(outcomes.len(), 8);
    for o in &outcomes {
        assert_eq!(o.inputs, 20_000, "{}", o.name);
        assert_eq!(o.panics, 0, "{} panicked on {:02x?}", o.name, o.first_panic);
        assert!(
            o.slowest < std::time::Duration::from_secs(1),
            "{}: one input took {:?}",
            o.name,
            o.slowest
        );
        // the mutations reach the refusal paths: most inputs are refused, not all accepted
        assert!(
            o.refused > o.inputs / 4,
            "{}: {} refused",
            o.name,
            o.refused
        );
    }
}

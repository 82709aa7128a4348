//! The fuzzing benchmark (`mesh/examples/fuzz.rs`) in short: every decoder of untrusted bytes,
//! 20 000 generated and mutated inputs each, no panic, no input that takes a second.

#[path = "../examples/fuzz.rs"]
mod fuzz;

#[test]
fn the_decoders_of_untrusted_bytes_refuse_garbage_without_panicking() {
    let outcomes = fuzz::run_all(20_000, 0x7e57);
    assert_eq!(outcomes.len(), 8);
    for o in &outcomes {
        o.assert_sound(20_000);
    }
}

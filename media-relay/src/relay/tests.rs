use super::*;

#[test]
fn automatic_worker_count_leaves_a_core_to_signaling() {
    assert_eq!(auto_workers(0), 1);
    assert_eq!(auto_workers(1), 1);
    assert_eq!(auto_workers(2), 1);
    assert_eq!(auto_workers(8), 7);
}

#[test]
fn batch_delay_from_tuning_wins_over_the_environment() {
    let t = RelayTuning {
        io_uring_batch_us: Some(0),
        ..RelayTuning::default()
    };
    assert_eq!(t.batch_us(), 0);
    let t = RelayTuning {
        io_uring_batch_us: Some(750),
        ..RelayTuning::default()
    };
    assert_eq!(t.batch_us(), 750);
}

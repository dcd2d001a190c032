use super::*;

fn spec(capacity: usize) -> ReplaySpec {
    ReplaySpec {
        capacity,
        observation_dim: 2,
        action_dim: 1,
        reward_dim: 2,
        extras: vec![("propensity".to_owned(), 1)],
        alpha: 1.0,
    }
}

// Add one step whose observation is [value, -value] and whose next observation is
// [value + 0.5, 0] (read only when the step ends its episode).
fn add(buffer: &ReplayBuffer, value: f32, terminal: bool, truncated: bool) {
    let observations = [value, -value];
    let next_observations = [value + 0.5, 0.0];
    let extra = [value * 10.0];
    buffer
        .extend(&Transitions {
            observations: &observations,
            actions: &[value],
            rewards: &[value, 2.0 * value],
            next_observations: &next_observations,
            terminals: &[terminal],
            truncations: &[truncated],
            extras: vec![&extra],
        })
        .unwrap();
}

struct Batch {
    observations: Vec<f32>,
    next_observations: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    terminals: Vec<bool>,
    truncations: Vec<bool>,
    extra: Vec<f32>,
    indices: Vec<i64>,
    stamps: Vec<i64>,
    weights: Vec<f32>,
}

impl Batch {
    fn new(rows: usize) -> Self {
        Batch {
            observations: vec![0.0; rows * 2],
            next_observations: vec![0.0; rows * 2],
            actions: vec![0.0; rows],
            rewards: vec![0.0; rows * 2],
            terminals: vec![false; rows],
            truncations: vec![false; rows],
            extra: vec![0.0; rows],
            indices: vec![0; rows],
            stamps: vec![0; rows],
            weights: vec![0.0; rows],
        }
    }

    fn view(&mut self) -> BatchMut<'_> {
        BatchMut {
            observations: &mut self.observations,
            next_observations: &mut self.next_observations,
            actions: &mut self.actions,
            rewards: &mut self.rewards,
            terminals: &mut self.terminals,
            truncations: &mut self.truncations,
            extras: vec![&mut self.extra],
            indices: &mut self.indices,
            stamps: &mut self.stamps,
            weights: Some(&mut self.weights),
        }
    }
}

#[test]
fn stale_update_is_rejected_after_overwrite() {
    let buffer = ReplayBuffer::new(spec(2), 0).unwrap();
    add(&buffer, 0.0, false, false);
    add(&buffer, 1.0, false, false);
    let mut batch = Batch::new(1);
    buffer.sample_uniform(1, true, &mut batch.view()).unwrap();
    assert_eq!(batch.indices, vec![0]);
    let inserted = buffer.priorities().unwrap()[0];

    add(&buffer, 2.0, false, false);
    let rejected = buffer.update_priorities(&[0], &[100.0], None).unwrap();
    assert_eq!(rejected, 1);
    assert_eq!(buffer.stale_updates().unwrap(), 1);
    assert_eq!(buffer.priorities().unwrap()[0], inserted);

    let rejected = buffer
        .update_priorities(&[0], &[100.0], Some(&batch.stamps))
        .unwrap();
    assert_eq!(rejected, 1);
}

#[test]
fn next_observation_crosses_boundary_and_wraps() {
    let buffer = ReplayBuffer::new(spec(4), 0).unwrap();
    add(&buffer, 1.0, false, false);
    add(&buffer, 2.0, true, false);
    // Slots: 0 = step 1, 1 = step 2 (terminal), 2 = boundary [2.5, 0], 3 = next episode.
    add(&buffer, 3.0, false, false);
    add(&buffer, 4.0, false, true);
    // Step 4 overwrites slot 0 and its boundary [4.5, 0] overwrites slot 1: only 3 and 0 remain.
    assert_eq!(
        buffer.sampleable_mask().unwrap(),
        vec![true, false, false, true]
    );
    let mut batch = Batch::new(2);
    buffer.gather(&[3, 0], &mut batch.view()).unwrap();
    assert_eq!(batch.next_observations, vec![4.0, -4.0, 4.5, 0.0]);
    assert_eq!(batch.truncations, vec![false, true]);
    assert_eq!(batch.extra, vec![30.0, 40.0]);
}

#[test]
fn without_replacement_rejects_large_batch() {
    let buffer = ReplayBuffer::new(spec(8), 0).unwrap();
    let mut batch = Batch::new(5);
    let error = buffer
        .sample_uniform(5, false, &mut batch.view())
        .unwrap_err();
    assert!(error.to_string().contains("empty"), "{error}");
    add(&buffer, 1.0, false, false);
    add(&buffer, 2.0, false, false);
    add(&buffer, 3.0, true, false);
    let error = buffer
        .sample_uniform(5, false, &mut batch.view())
        .unwrap_err();
    assert!(
        error.to_string().contains("requested 5, buffer holds 3"),
        "{error}"
    );
}

#[test]
fn sequences_stay_within_one_episode() {
    let buffer = ReplayBuffer::new(spec(16), 3).unwrap();
    for episode in 0..3 {
        for step in 0..4 {
            add(&buffer, (episode * 10 + step) as f32, step == 3, false);
        }
    }
    let mut batch = Batch::new(20 * 3);
    buffer.sample_sequences(20, 3, &mut batch.view()).unwrap();
    for window in batch.actions.chunks(3) {
        assert_eq!(window[1], window[0] + 1.0);
        assert_eq!(window[2], window[0] + 2.0);
    }
}

#[test]
fn save_and_load_restore_state() {
    let directory = std::env::temp_dir().join(format!("recrl-replay-test-{}", std::process::id()));
    let buffer = ReplayBuffer::new(spec(8), 5).unwrap();
    for step in 0..10 {
        add(&buffer, step as f32, step % 4 == 3, false);
    }
    let mut batch = Batch::new(4);
    buffer
        .sample_prioritized(4, 0.5, &mut batch.view())
        .unwrap();
    buffer
        .update_priorities(&batch.indices, &[2.0, 3.0, 4.0, 5.0], Some(&batch.stamps))
        .unwrap();
    buffer.save(&directory).unwrap();
    buffer.save(&directory).unwrap();
    let loaded = ReplayBuffer::load(&directory).unwrap();
    fs_cleanup(&directory);

    assert_eq!(loaded.priorities().unwrap(), buffer.priorities().unwrap());
    assert_eq!(loaded.cursor().unwrap(), buffer.cursor().unwrap());
    assert_eq!(
        loaded.sampleable_mask().unwrap(),
        buffer.sampleable_mask().unwrap()
    );
    let (mut first, mut second) = (Batch::new(6), Batch::new(6));
    buffer
        .sample_prioritized(6, 0.4, &mut first.view())
        .unwrap();
    loaded
        .sample_prioritized(6, 0.4, &mut second.view())
        .unwrap();
    assert_eq!(first.indices, second.indices);
    assert_eq!(first.observations, second.observations);
    assert_eq!(first.weights, second.weights);
}

fn fs_cleanup(directory: &std::path::Path) {
    std::fs::remove_dir_all(directory).unwrap();
}

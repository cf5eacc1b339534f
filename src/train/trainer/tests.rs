use super::*;
use crate::train::data::synthetic;

fn cfg(mask: &str, grad: &str) -> TrainConfig {
    TrainConfig {
        hidden: vec![64, 32],
        mask: mask.parse().unwrap(),
        grad: grad.parse().unwrap(),
        epochs: 2,
        batch: 32,
        lr: 0.02,
        ..Default::default()
    }
}

#[test]
fn sparse_training_learns_keeps_structure_and_is_deterministic() -> Result<()> {
    let data = synthetic(512, 0);
    let dev = Device::Cpu;
    let exact = |c: TrainConfig| TrainConfig {
        solver: crate::solvers::SolverRef::Builtin(&crate::solvers::exact::Exact),
        ..c
    };
    let a = train(&exact(cfg("transposable:4:8", "mvue:2:4")), &data, &dev)?;
    assert!(a.structure_ok);
    assert_eq!(a.steps, 2 * 512 / 32);
    assert_eq!(a.sparse_layers, 2);
    assert!((a.sparsity - 0.5).abs() < 1e-9, "{}", a.sparsity);
    assert!(
        a.test_accuracy > 0.5,
        "accuracy {} on a learnable problem (chance 0.1)",
        a.test_accuracy
    );
    let b = train(&exact(cfg("transposable:4:8", "mvue:2:4")), &data, &dev)?;
    assert_eq!(a.test_accuracy, b.test_accuracy);
    assert_eq!(a.train_loss, b.train_loss);
    // Masks recomputed every 5 steps.
    let c = train(
        &TrainConfig {
            every: 5,
            ..cfg("nm:2:4", "greedy:2:4")
        },
        &data,
        &dev,
    )?;
    assert_eq!(c.mask_updates, 1 + (c.steps - 1) / 5);
    assert!(c.structure_ok);
    // The greedy solver may leave blocks under-filled: at least half pruned, never less.
    let d = train(&cfg("transposable:4:8", "dense"), &data, &dev)?;
    assert!(
        d.structure_ok && d.sparsity >= 0.5 && d.sparsity < 0.6,
        "{}",
        d.sparsity
    );
    Ok(())
}

#[test]
fn lenet_and_resnet_train_with_all_three_gemms_sparse() -> Result<()> {
    let dev = Device::Cpu;
    let data = synthetic(64, 0);
    let lenet = TrainConfig {
        model: "lenet".into(),
        epochs: 1,
        ..cfg("transposable:4:8", "mvue:2:4")
    };
    let r = train(&lenet, &data, &dev)?;
    // conv1 ([16, 25]) and the head stay dense; conv2 [32, 400] and fc1 [128, 800] are sparse.
    assert_eq!(r.sparse_layers, 2);
    assert!(r.structure_ok && r.steps == 2);
    // ResNet on 3×32×32: one step on random images, then every conv's operands checked.
    let policy = LayerPolicy {
        estimator: "mvue:2:4".parse()?,
        custom: true,
        tile: 8,
        srste: 0.0,
    };
    let mut model = models::build("resnet", (3, 32, 32), 10, &[], &policy, 0, &dev)?;
    let mask: Structure = "transposable:4:8".parse()?;
    for l in model.sparse_layers() {
        let m = layer_mask(l, mask, &crate::solvers::exact::Exact, 0)?;
        l.set_mask(m.as_ref())?;
    }
    // Every conv but the 3-channel stem; the 1×1 shortcut [32, 16] tiles too.
    assert_eq!(model.sparse_layers().len(), 8);
    let mut opt = Optimizer::sgd(model.vars(), 0.9, 0.0);
    let x = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &dev).unwrap();
    let y = Tensor::new(&[0u32, 1, 2, 3], &dev).unwrap();
    let loss = train_step(model.as_ref(), &mut opt, &x, &y, 0.01).unwrap();
    assert!(loss.is_finite());
    for l in model.sparse_layers() {
        assert!(layer_structure_ok(l, mask)?);
    }
    Ok(())
}

#[test]
fn a_saved_checkpoint_restarts_training_and_a_wrong_one_is_named() -> Result<()> {
    let data = synthetic(256, 0);
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("w.safetensors");
    let first = train(
        &TrainConfig {
            save: Some(ckpt.clone()),
            ..cfg("dense", "dense")
        },
        &data,
        &dev,
    )?;
    // Zero more learning from the checkpoint: evaluation alone gives the saved model's accuracy.
    let policy = LayerPolicy {
        estimator: GradEstimator::Dense,
        custom: false,
        tile: 1,
        srste: 0.0,
    };
    let model = models::build("mlp", data.shape, 10, &[64, 32], &policy, 99, &dev)?;
    load_vars(&model.vars(), &ckpt)?;
    assert_eq!(evaluate(model.as_ref(), &data, &dev)?, first.test_accuracy);
    // A static mask computed from the checkpoint's weights, then training goes on.
    let r = train(
        &TrainConfig {
            init: Some(ckpt.clone()),
            ..cfg("nm:2:4", "dense")
        },
        &data,
        &dev,
    )?;
    assert!(r.structure_ok && r.mask_updates == 1);
    let other = models::build("mlp", data.shape, 10, &[32, 32], &policy, 0, &dev)?;
    let e = load_vars(&other.vars(), &ckpt).unwrap_err().to_string();
    assert!(
        e.contains("w.safetensors") && e.contains("param0") && e.contains("shape"),
        "{e}"
    );
    Ok(())
}

#[test]
fn bad_configurations_are_errors_naming_the_field() {
    let data = synthetic(64, 0);
    let e = train(
        &TrainConfig {
            batch: 30,
            ..cfg("dense", "mvue:2:4")
        },
        &data,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
}

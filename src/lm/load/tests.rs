use super::*;
use crate::lm::save::{Writer, save_hf, write_gguf};
use candle_core::IndexOp;

fn tiny() -> Config {
    Config::tiny(32, 64)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn gguf_logits_equal_candle_transformers_quantized_llama() {
    // The loader's q/k un-permutation and the forward (rotate_half on the HF layout) against
    // candle-transformers' llama on the GGUF layout (interleaved rotary embedding).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let dev = Device::Cpu;
    let model = Llama::random(tiny(), 11, &dev).unwrap();
    write_gguf(&model, &path).unwrap();
    let ck = open(&path, &dev).unwrap();
    assert_eq!(ck.format, Format::Gguf);
    // GGUF stores ε in f32.
    let eps = model.config.rms_norm_eps;
    assert!((ck.config.rms_norm_eps - eps).abs() < 1e-12);
    let same = Config {
        rms_norm_eps: eps,
        ..ck.config.clone()
    };
    assert_eq!(same, model.config);
    let ours = ck.model().unwrap();
    let prompt = Tensor::new(&[[3u32, 14, 15, 9, 26, 5, 35, 8, 9, 7]], &dev).unwrap();
    let logits = ours.forward(&prompt).unwrap();
    let last = logits.i((0, 9)).unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut theirs = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content, &mut f, &dev,
    )
    .unwrap();
    let reference = theirs.forward(&prompt, 0).unwrap().i(0).unwrap();
    let d = max_abs(&last, &reference);
    assert!(d < 1e-4, "max |Δlogit| {d}");
    // And the weights read back in the HF layout are the ones written.
    assert_eq!(
        max_abs(
            ours.layers[1].weight(Proj::Q),
            model.layers[1].weight(Proj::Q)
        ),
        0.0
    );
    assert_eq!(
        max_abs(
            ours.layers[0].weight(Proj::K),
            model.layers[0].weight(Proj::K)
        ),
        0.0
    );
}

#[test]
fn a_sharded_checkpoint_is_written_back_in_its_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("src"), dir.path().join("out"));
    std::fs::create_dir_all(&out).unwrap();
    let dev = Device::Cpu;
    let model = Llama::random(tiny(), 13, &dev).unwrap();
    save_hf(&model, &src, DType::F16).unwrap();
    // Split model.safetensors into two shards with an index, as HF does.
    let all = candle_core::safetensors::load(src.join("model.safetensors"), &dev).unwrap();
    std::fs::remove_file(src.join("model.safetensors")).unwrap();
    let (mut a, mut b, mut map) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
        serde_json::Map::new(),
    );
    for (name, t) in all {
        let shard = if name.contains("layers.1.") {
            "model-00002-of-00002.safetensors"
        } else {
            "model-00001-of-00002.safetensors"
        };
        map.insert(name.clone(), serde_json::json!(shard));
        if shard.contains("00001") {
            a.insert(name, t);
        } else {
            b.insert(name, t);
        }
    }
    candle_core::safetensors::save(&a, src.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, src.join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map}).to_string();
    std::fs::write(src.join("model.safetensors.index.json"), &index).unwrap();
    let ck = open(&src, &dev).unwrap();
    let q1 = Proj::Q.hf_name(1);
    let mut w = Writer::create(&ck, &out).unwrap();
    w.put(&q1, ck.layer(1).unwrap().weight(Proj::Q)).unwrap();
    w.finish().unwrap();
    for f in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let (x, y) = (
            std::fs::read(src.join(f)).unwrap(),
            std::fs::read(out.join(f)).unwrap(),
        );
        let (x, y) = (
            safetensors::SafeTensors::deserialize(&x).unwrap(),
            safetensors::SafeTensors::deserialize(&y).unwrap(),
        );
        let mut names_x = x.names();
        let mut names_y = y.names();
        names_x.sort();
        names_y.sort();
        assert_eq!(names_x, names_y, "{f} holds the same tensors");
        for (name, v) in x.tensors() {
            assert_eq!(y.tensor(&name).unwrap().dtype(), v.dtype());
            // Unchanged here, so equal even where replaced (f16 → f32 → f16 is exact).
            assert_eq!(y.tensor(&name).unwrap().data(), v.data(), "{name}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
        index
    );
    assert!(!out.join("model.safetensors").exists());
    assert!(open(&out, &dev).and_then(|c| c.model()).is_ok());
}

#[test]
fn hf_write_back_converts_only_the_replaced_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("src"), dir.path().join("out"));
    std::fs::create_dir_all(&out).unwrap();
    let dev = Device::Cpu;
    let model = Llama::random(tiny(), 12, &dev).unwrap();
    save_hf(&model, &src, DType::BF16).unwrap();
    let ck = open(&src, &dev).unwrap();
    assert!(ck.dtypes.values().all(|d| *d == DType::BF16));
    let q = Proj::Q.hf_name(0);
    let zeros = ck.layer(0).unwrap().weight(Proj::Q).zeros_like().unwrap();
    let mut w = Writer::create(&ck, &out).unwrap();
    assert!(!w.is_pending(&q), "an HF output starts as the input's copy");
    // A wrong shape is refused, naming the tensor.
    let e = w.put(&q, &zeros.t().unwrap().narrow(0, 0, 4).unwrap());
    assert!(e.unwrap_err().to_string().contains(&q));
    w.put(&q, &zeros).unwrap();
    w.finish().unwrap();
    let a = std::fs::read(src.join("model.safetensors")).unwrap();
    let b = std::fs::read(out.join("model.safetensors")).unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    for (name, view) in a.tensors() {
        let other = b.tensor(&name).unwrap();
        assert_eq!(other.dtype(), view.dtype(), "{name}");
        if name == q {
            assert!(other.data().iter().all(|&x| x == 0), "{name} is zeroed");
        } else {
            assert_eq!(other.data(), view.data(), "{name} is copied byte for byte");
        }
    }
}

#[test]
fn a_gguf_input_is_written_tensor_by_tensor_and_reads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (path, out) = (dir.path().join("m.gguf"), dir.path().join("out"));
    std::fs::create_dir_all(&out).unwrap();
    let dev = Device::Cpu;
    let model = Llama::random(tiny(), 17, &dev).unwrap();
    write_gguf(&model, &path).unwrap();
    let ck = open(&path, &dev).unwrap();
    let mut w = Writer::create(&ck, &out).unwrap();
    w.put_outer(&ck.outer().unwrap()).unwrap();
    w.put_layer(0, &ck.layer(0).unwrap()).unwrap();
    // Layer 1 never written: finishing is an error naming one of its tensors.
    let err = w.finish().unwrap_err().to_string();
    assert!(err.contains("model.layers.1."), "{err}");
    let mut w = Writer::create(&ck, &out).unwrap();
    w.put_outer(&ck.outer().unwrap()).unwrap();
    for l in 0..2 {
        w.put_layer(l, &ck.layer(l).unwrap()).unwrap();
    }
    w.finish().unwrap();
    let back = open(&out, &dev).unwrap().model().unwrap();
    assert_eq!(back.config.hidden_size, model.config.hidden_size);
    assert_eq!(
        back.config.tie_word_embeddings,
        model.config.tie_word_embeddings
    );
    for (a, b) in back.layers.iter().zip(&model.layers) {
        for p in Proj::ALL {
            assert_eq!(max_abs(a.weight(p), b.weight(p)), 0.0);
        }
        assert_eq!(max_abs(&a.attn_norm, &b.attn_norm), 0.0);
    }
    assert_eq!(max_abs(&back.embed, &model.embed), 0.0);
}

#[test]
fn a_checkpoint_missing_a_tensor_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let model = Llama::random(tiny(), 18, &dev).unwrap();
    save_hf(&model, dir.path(), DType::F32).unwrap();
    let path = dir.path().join("model.safetensors");
    let mut all = candle_core::safetensors::load(&path, &dev).unwrap();
    all.remove("model.layers.1.mlp.up_proj.weight");
    candle_core::safetensors::save(&all, &path).unwrap();
    let err = open(dir.path(), &dev).err().unwrap().to_string();
    assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "{err}");
}

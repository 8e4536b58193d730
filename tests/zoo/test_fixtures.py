from ulmfit.pretrain.modeldir import load_language_model, read_config


def test_tiny_model_dirs(sp_model_dir, word_model_dir):
    for d, tok in ((sp_model_dir, "sentencepiece"), (word_model_dir, "word")):
        assert (d / "fwd/model.safetensors").is_file() and (d / "bwd/model.safetensors").is_file()
        assert read_config(d)["tokenizer"]["type"] == tok
        model, _ = load_language_model(d, "bwd")
        assert model[0].encoder.weight.shape[1] == 64

from ulmfit.pretrain.modeldir import ModelDir


def test_tiny_model_dirs(sp_model_dir, word_model_dir):
    for d, tok in ((sp_model_dir, "sentencepiece"), (word_model_dir, "word")):
        assert (d / "fwd/model.safetensors").is_file() and (d / "bwd/model.safetensors").is_file()
        assert ModelDir.open(d).config["tokenizer"]["type"] == tok
        model = ModelDir.open(d).load_language_model("bwd")
        assert model[0].encoder.weight.shape[1] == 64

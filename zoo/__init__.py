"""The model zoo: a catalogue of named models, Hub download and publishing, embedding remap, legacy import."""

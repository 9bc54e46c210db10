"""Where pixels come from: BBBC021 tables, fields, synthetic plates, benchmark datasets."""

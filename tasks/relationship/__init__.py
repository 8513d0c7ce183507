"""The pairwise emotional relationship (PERR) study: two characters in a drama clip -> hostile, tense,
neutral, mild or intimate (coarse: negative / neutral / positive)."""

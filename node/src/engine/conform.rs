//! Render one montage shot: decode source chunks, conform the frames, encode a segment.

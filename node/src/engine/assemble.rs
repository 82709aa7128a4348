//! Join a montage's segments frame-exactly and mux the song once.

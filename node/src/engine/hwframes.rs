//! Frames on the GPU for VAAPI encoders: a VAAPI device on a DRM render node, a pool of
//! hardware frames of the encode's size, and the upload of each software frame (NV12) into
//! one of them. A VAAPI encoder takes only such frames.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use ff::ffi;
use ffmpeg_next as ff;

/// The software format frames are uploaded from: what every VAAPI encoder takes for 8-bit.
pub const UPLOAD_FORMAT: ff::format::Pixel = ff::format::Pixel::NV12;

/// Hardware frames to upload into, on one device; both references released on drop.
pub struct HwFrames {
    device: *mut ffi::AVBufferRef,
    frames: *mut ffi::AVBufferRef,
    /// The render node the device is on.
    pub node: PathBuf,
}

// SAFETY: the two references are owned by this value alone; libavutil's buffer references
// and hardware frame pools may be used from any thread, one at a time (`&mut self`).
unsafe impl Send for HwFrames {}

impl Drop for HwFrames {
    fn drop(&mut self) {
        // SAFETY: each pointer is a reference this value owns (or null); unref nulls it.
        unsafe {
            ffi::av_buffer_unref(&mut self.frames);
            ffi::av_buffer_unref(&mut self.device);
        }
    }
}

fn av_error(code: i32) -> String {
    ff::Error::from(code).to_string()
}

/// The DRM render nodes of this box (`/dev/dri/renderD*`), in order.
pub fn render_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev/dri")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("renderD"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

impl HwFrames {
    /// A VAAPI device on the first render node that opens, with a frame pool of
    /// `width`×`height`; one line naming each node tried when none does.
    pub fn vaapi(width: u32, height: u32) -> Result<HwFrames, String> {
        let nodes = render_nodes();
        if nodes.is_empty() {
            return Err("no DRM render node (/dev/dri/renderD*) to upload frames to".into());
        }
        let mut why = Vec::new();
        for node in nodes {
            match Self::vaapi_on(&node, width, height) {
                Ok(f) => return Ok(f),
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    /// A VAAPI device on render node `node`, with a frame pool of `width`×`height`.
    pub fn vaapi_on(node: &Path, width: u32, height: u32) -> Result<HwFrames, String> {
        super::init();
        let path = CString::new(node.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: not a device path", node.display()))?;
        let mut device: *mut ffi::AVBufferRef = std::ptr::null_mut();
        // SAFETY: av_hwdevice_ctx_create writes a new reference into `device` on success and
        // leaves it null on failure; `path` outlives the call.
        let r = unsafe {
            ffi::av_hwdevice_ctx_create(
                &mut device,
                ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI,
                path.as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        if r < 0 || device.is_null() {
            return Err(format!(
                "{}: no VAAPI device there ({}; is its driver installed, and may this node open it?)",
                node.display(),
                av_error(r)
            ));
        }
        let mut hw = HwFrames {
            device,
            frames: std::ptr::null_mut(),
            node: node.to_path_buf(),
        };
        // SAFETY: `device` is a valid device reference; the frames context it returns is
        // filled in before av_hwframe_ctx_init, as libavutil documents.
        unsafe {
            hw.frames = ffi::av_hwframe_ctx_alloc(hw.device);
            if hw.frames.is_null() {
                return Err(format!("{}: no memory for a frame pool", node.display()));
            }
            let ctx = (*hw.frames).data as *mut ffi::AVHWFramesContext;
            (*ctx).format = ffi::AVPixelFormat::AV_PIX_FMT_VAAPI;
            (*ctx).sw_format = UPLOAD_FORMAT.into();
            (*ctx).width = width as i32;
            (*ctx).height = height as i32;
            (*ctx).initial_pool_size = 20;
            let r = ffi::av_hwframe_ctx_init(hw.frames);
            if r < 0 {
                return Err(format!(
                    "{}: no pool of {width}x{height} NV12 frames on the GPU ({})",
                    node.display(),
                    av_error(r)
                ));
            }
        }
        Ok(hw)
    }

    /// Give the encoder of `ctx` this pool: it then takes hardware frames (`AV_PIX_FMT_VAAPI`).
    /// Call before the encoder is opened.
    pub fn attach(&self, ctx: &mut ff::codec::context::Context) -> Result<(), String> {
        // SAFETY: the encoder context is not open yet; it takes a new reference of its own,
        // which avcodec frees with the context.
        unsafe {
            let c = ctx.as_mut_ptr();
            let r = ffi::av_buffer_ref(self.frames);
            if r.is_null() {
                return Err("no memory for a frame pool reference".into());
            }
            ffi::av_buffer_unref(&mut (*c).hw_frames_ctx);
            (*c).hw_frames_ctx = r;
            (*c).pix_fmt = ffi::AVPixelFormat::AV_PIX_FMT_VAAPI;
        }
        Ok(())
    }

    /// `sw` (NV12, the pool's size) uploaded into a frame of the pool, with its timestamps.
    pub fn upload(&mut self, sw: &ff::frame::Video) -> Result<ff::frame::Video, String> {
        if sw.format() != UPLOAD_FORMAT {
            return Err(format!(
                "a {:?} frame cannot be uploaded: NV12 only",
                sw.format()
            ));
        }
        let mut hw = ff::frame::Video::empty();
        // SAFETY: `hw` is an empty frame that av_hwframe_get_buffer fills with a pool frame;
        // transfer copies `sw`'s planes into it and copy_props its timestamps and colours.
        unsafe {
            let r = ffi::av_hwframe_get_buffer(self.frames, hw.as_mut_ptr(), 0);
            if r < 0 {
                return Err(format!("no free frame on the GPU ({})", av_error(r)));
            }
            let r = ffi::av_hwframe_transfer_data(hw.as_mut_ptr(), sw.as_ptr(), 0);
            if r < 0 {
                return Err(format!("upload to the GPU failed ({})", av_error(r)));
            }
            let r = ffi::av_frame_copy_props(hw.as_mut_ptr(), sw.as_ptr());
            if r < 0 {
                return Err(format!("frame properties not copied ({})", av_error(r)));
            }
        }
        Ok(hw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_that_is_not_there_is_one_line_naming_it() {
        let e = HwFrames::vaapi_on(Path::new("/nonexistent/renderD999"), 320, 240)
            .err()
            .expect("no VAAPI device at a path that does not exist");
        assert!(
            e.starts_with("/nonexistent/renderD999: no VAAPI device there ("),
            "{e}"
        );
    }
}

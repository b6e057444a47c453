"""``qdev export dicom SESSION --out DIR``: a session's masks as a DICOM Segmentation and its
per-frame lesion areas as a TID 1500 Measurement Report, written with highdicom, as IHE's AI
Results profile has AI results reach a PACS.

* **A DICOM probe** (single- or multi-frame): the SEG and SR reference the source's own Study /
  Series / SOP Instance UIDs and frame numbers; the source file is read again (its SOP Instance
  UID must be the one the session recorded) so that the SEG takes its geometry and patient/study.
* **Other file probes** (an image folder or glob): each frame's own file is read again and
  becomes a Secondary Capture image of a new series (one study per export), so that the SEG has
  something to reference. Sources whose frames are gone (phantom, camera, OpenIGTLink) cannot be
  exported: the session did not keep their pixels.

The SEG is BINARY with one segment, "lesion" (category SCT 49755003 Morphologically abnormal
structure, type SCT 52988006 Lesion), algorithm identification = the bundle (name, id and
version), and "research use, not for diagnosis" in the series description. Masks are at the
model's pixels; they are resized nearest-neighbour to each source frame's size (every model pixel
kept as a block; the live view's overlay resamples bilinearly and thresholds instead, so contours
drawn there can differ from the SEG by a pixel at edges). Areas are in mm^2 where the source states
its pixel spacing, else in
source pixels (unit ``{pixels}``), and the SR says which. Every object is written to a temporary
name and renamed, so a failed export leaves no half file.
"""

from __future__ import annotations

import datetime
import glob as globmod
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qdev.core.errors import ConfigError, DataError

__all__ = ["DicomExport", "export_session_dicom", "LESION_CATEGORY", "LESION_TYPE"]

RESEARCH = "qdev lesion segmentation, research use, not for diagnosis"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage (single frame)


def _codes():  # noqa: ANN202
    from pydicom.sr.coding import Code

    return Code(*LESION_CATEGORY), Code(*LESION_TYPE)


LESION_CATEGORY = ("49755003", "SCT", "Morphologically abnormal structure")
LESION_TYPE = ("52988006", "SCT", "Lesion")


@dataclass
class DicomExport:
    """What an export wrote: the paths, and the UIDs a PACS query will find them by."""

    out: Path
    sr: Path
    segs: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    study_uid: str = ""
    seg_series_uid: str = ""
    sr_uid: str = ""
    frames: int = 0
    referenced: str = ""  # "source DICOM" or "secondary capture"

    @property
    def files(self) -> list[Path]:
        return [*self.images, *self.segs, self.sr]


def _resize_nearest(m: np.ndarray, h: int, w: int) -> np.ndarray:
    if m.shape == (h, w):
        return m
    ys = (np.arange(h) * m.shape[0] // h).clip(0, m.shape[0] - 1)
    xs = (np.arange(w) * m.shape[1] // w).clip(0, m.shape[1] - 1)
    return m[ys][:, xs]


def _save(ds, path: Path) -> Path:  # noqa: ANN001
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def _frames_ok(rows: list[dict], masks: dict[int, np.ndarray]) -> list[tuple[dict, np.ndarray]]:
    out = [
        (r, masks[int(r["frame_id"])])
        for r in rows
        if r["status"] == "ok" and int(r["frame_id"]) in masks
    ]
    if not out:
        raise DataError("the session has no segmented frame to export")
    return out


def _dicom_source(manifest: dict, frames: list[tuple[dict, np.ndarray]]):  # noqa: ANN202
    """(source dataset, [(frame number, mask at source size)]) of a DICOM probe session."""
    import pydicom

    ident = (manifest.get("source") or {}).get("dicom") or {}
    path = Path(ident.get("path", ""))
    if not path.is_file():
        raise DataError(
            f"the session's DICOM source {path} is not there any more: the SEG must reference it"
        )
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        raise DataError(f"{path}: unreadable DICOM ({exc.__class__.__name__})") from None
    if str(getattr(ds, "SOPInstanceUID", "")) != ident.get("SOPInstanceUID"):
        raise DataError(
            f"{path}: its SOP Instance UID is not the one the session segmented (the file changed)"
        )
    h, w = int(ds.Rows), int(ds.Columns)
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    out = []
    for r, m in frames:
        k = int(r["frame_id"])  # file sources: frame index = frame id (0-based)
        if not 0 <= k < n:
            raise DataError(f"frame {k} is not a frame of {path} ({n} frames)")
        out.append((k + 1, _resize_nearest(m, h, w)))
    return ds, out


def _file_frames(
    manifest: dict, frames: list[tuple[dict, np.ndarray]]
) -> list[tuple[Path, np.ndarray]]:
    spec = str((manifest.get("source") or {}).get("source") or "")
    base = Path(spec)
    if base.is_dir():
        found = {p.name: p for p in sorted(base.rglob("*")) if p.is_file()}
    elif any(c in spec for c in "*?["):
        found = {Path(p).name: Path(p) for p in sorted(globmod.glob(spec))}
    elif base.is_file():
        found = {base.name: base}
    else:
        raise DataError(
            f"the session's source {spec!r} kept no pixels that can be read again "
            "(phantom, camera and OpenIGTLink frames are not stored): export needs a file or DICOM "
            "probe"
        )
    out = []
    for r, m in frames:
        name = r.get("source")
        if not name or name not in found:
            raise DataError(
                f"frame {int(r['frame_id'])}: its file {name!r} is no longer under {spec}"
            )
        out.append((found[name], m))
    return out


def _sc_images(files: list[tuple[Path, np.ndarray]], study_uid: str, info: dict) -> list:
    import highdicom as hd

    from qdev.core.preprocess import read_image, to_luma_u8

    series = hd.UID()
    out = []
    for i, (path, _) in enumerate(files, start=1):
        px = to_luma_u8(read_image(path))
        sc = hd.sc.SCImage(
            pixel_array=px,
            photometric_interpretation="MONOCHROME2",
            bits_allocated=8,
            coordinate_system="PATIENT",
            study_instance_uid=study_uid,
            series_instance_uid=series,
            series_number=100,
            sop_instance_uid=hd.UID(),
            instance_number=i,
            manufacturer="qdev",
            patient_id=info["patient_id"],
            patient_name=info["patient_name"],
            patient_birth_date=None,
            patient_sex=None,
            accession_number=None,
            study_id="1",
            study_date=info["date"],
            study_time=info["time"],
            referring_physician_name=None,
            patient_orientation=("L", "P"),
            series_description=f"qdev frames of {path.parent.name} (research use)"[:64],
        )
        sc.Laterality = (
            ""  # a breast is paired; which side is not known here (type 2C: present, empty)
        )
        out.append(sc)
    return out


def export_session_dicom(
    session: Path,
    out: Path,
    patient_id: str = "QDEV-ANON",
    patient_name: str = "Anonymous^Research",
) -> DicomExport:
    """Write ``seg/SEG*.dcm`` (one per segmented frame), ``SR.dcm`` (and ``images/SC*.dcm`` for
    non-DICOM sources) under ``out``.

    Raises:
        DataError: the session, its masks or its source cannot be read, or ``out`` is not writable.
        ConfigError: ``out`` holds files already.
    """
    import highdicom as hd

    from qdev.host.session import read_masks, read_session

    manifest, rows = read_session(session)
    frames = _frames_ok(rows, read_masks(session, manifest))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: choose another --out")
    bundle_id = str((manifest.get("device") or {}).get("bundle_id") or "unknown")
    desc = _segment_description(bundle_id)
    result = DicomExport(out, out / "SR.dcm", frames=len(frames))
    series = hd.UID()
    is_dicom = (manifest.get("source") or {}).get("dicom")
    # both check the source before any write
    dicom_src = _dicom_source(manifest, frames) if is_dicom else None
    files = None if dicom_src else _file_frames(manifest, frames)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out}: cannot create ({exc.strerror or exc})") from None
    if dicom_src is not None:
        ds, refs = dicom_src
        sources, spacing, result.referenced = [ds], _spacing(ds), "source DICOM"
        frame_refs = [(ds, fno, m) for fno, m in refs]
    else:
        sources, frame_refs, result.images = _write_secondary_captures(
            files, out, patient_id, patient_name
        )
        spacing, result.referenced = None, "secondary capture"
    (out / "seg").mkdir()
    segs = []
    for k, (ds, fno, m) in enumerate(frame_refs, start=1):
        seg = _segmentation(ds, fno, m, desc, series, k, bundle_id)
        segs.append((seg, ds, fno, m))
        result.segs.append(_save(seg, out / "seg" / f"SEG{k:05d}.dcm"))
    sr = _measurement_report(segs, spacing, bundle_id, sources)
    _save(sr, result.sr)
    result.study_uid, result.sr_uid = str(sr.StudyInstanceUID), str(sr.SOPInstanceUID)
    result.seg_series_uid = series
    return result


def _write_secondary_captures(files, out: Path, patient_id: str, patient_name: str):  # noqa: ANN001, ANN202
    """The frames of a non-DICOM source as secondary-capture images (``out/images/SC*.dcm``):
    (the images; per frame the image, no frame number and the mask at the image's size; the
    paths written)."""
    import highdicom as hd

    now = datetime.datetime.now()
    info = {
        "patient_id": patient_id,
        "patient_name": patient_name,
        "date": now.date(),
        "time": now.time(),
    }
    sources = _sc_images(files, hd.UID(), info)
    (out / "images").mkdir()
    paths = [_save(sc, out / "images" / f"SC{i:05d}.dcm") for i, sc in enumerate(sources, 1)]
    frame_refs = [
        (sc, None, _resize_nearest(m, int(sc.Rows), int(sc.Columns)))
        for sc, (_, m) in zip(sources, files)
    ]
    return sources, frame_refs, paths


def _segment_description(bundle_id: str):  # noqa: ANN202
    """The one segment: "lesion", SNOMED-coded, found automatically by the bundle."""
    import highdicom as hd

    algo = hd.AlgorithmIdentificationSequence(
        name="qdev QuantU-Net", version=bundle_id[:64], family=_ai_family(), source="qdev"
    )
    cat, typ = _codes()
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=cat,
        segmented_property_type=typ,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algo,
        tracking_uid=hd.UID(),
        tracking_id="qdev lesion",
    )


def _ai_family():  # noqa: ANN202
    from pydicom.sr.codedict import codes

    return codes.cid7162.ArtificialIntelligence


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"qdev {version('qdev')}"
    except Exception:  # noqa: BLE001
        return "qdev"


def _spacing(ds) -> tuple[float, float] | None:  # noqa: ANN001
    from qdev.core.probe.sources import dicom_spacing

    return dicom_spacing(ds)


def _segmentation(ds, fno: int | None, mask: np.ndarray, desc, series: str, k: int, bundle_id: str):  # noqa: ANN001, ANN202
    """One frame's SEG. highdicom builds it from a single-frame source; a frame of a multi-frame
    source without a Frame of Reference (an ultrasound cine, as a rule) is something highdicom
    refuses (image.py: "Only a single frame is supported when the source image has no Frame of
    Reference UID"), so the SEG is built from a single-frame view of that frame (same UIDs and
    header) and its references then name the frame (ReferencedFrameNumber), as the standard has
    them for a frame of a multi-frame image."""
    import copy

    import highdicom as hd

    src = ds
    multi = int(getattr(ds, "NumberOfFrames", 1) or 1) > 1
    if multi:
        src = copy.deepcopy(ds)
        for tag in (
            "NumberOfFrames",
            "FrameIncrementPointer",
            "FrameTime",
            "FrameTimeVector",
            "PixelData",
        ):
            if tag in src:
                delattr(src, tag)
        src.SOPClassUID = (
            US_IMAGE  # a single-frame view; the references get the real class back below
        )
    seg = hd.seg.Segmentation(
        source_images=[src],
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc],
        series_instance_uid=series,
        series_number=901,
        sop_instance_uid=hd.UID(),
        instance_number=k,
        manufacturer="qdev",
        manufacturer_model_name="QuantU-Net",
        software_versions=_version(),
        device_serial_number=bundle_id[:64],
        series_description=RESEARCH[:64],
        omit_empty_frames=False,
    )
    if multi:
        _refer_to_frame(seg, str(ds.SOPClassUID), int(fno))
    if (
        "PatientOrientation" not in seg
    ):  # General Image, type 2C: required without a frame of reference
        seg.PatientOrientation = getattr(ds, "PatientOrientation", None) or ""
    return seg


def _refer_to_frame(seg, sop_class: str, frame: int) -> None:  # noqa: ANN001
    """Point a SEG's references at frame ``frame`` of a source of class ``sop_class``: the source
    image references (per-frame derivation, top level) name the frame; the instance-level ones
    (common instance reference) name no frame. Items are copied first: highdicom shares one item
    object between those sequences."""
    import copy

    def patched(item, with_frame: bool):  # noqa: ANN001, ANN202
        new = copy.deepcopy(item)
        new.ReferencedSOPClassUID = sop_class
        if with_frame:
            new.ReferencedFrameNumber = frame
        elif "ReferencedFrameNumber" in new:
            del new.ReferencedFrameNumber
        return new

    for series in getattr(seg, "ReferencedSeriesSequence", []):
        series.ReferencedInstanceSequence = [
            patched(x, False) for x in series.ReferencedInstanceSequence
        ]
    for group in seg.PerFrameFunctionalGroupsSequence:
        for der in getattr(group, "DerivationImageSequence", []):
            der.SourceImageSequence = [patched(x, True) for x in der.SourceImageSequence]
    if "SourceImageSequence" in seg:
        seg.SourceImageSequence = [patched(x, True) for x in seg.SourceImageSequence]


def _observer(bundle_id: str):  # noqa: ANN202
    """The observing device: qdev, with the bundle as its serial number."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name="qdev",
            manufacturer_name="qdev",
            model_name="QuantU-Net",
            serial_number=bundle_id[:64],
        ),
    )


def _roi_group(seg, ds, fno: int | None, area: float, unit, algo, i: int):  # noqa: ANN001, ANN202
    """One frame's planar-ROI group: the lesion area, referencing its SEG and source image."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    src = hd.sr.SourceImageForSegmentation(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), [fno] if fno else None
    )
    ref = hd.sr.ReferencedSegmentationFrame(
        str(seg.SOPClassUID), str(seg.SOPInstanceUID), 1, 1, src
    )
    area_m = hd.sr.Measurement(name=codes.SCT.Area, value=area, unit=unit, algorithm_id=algo)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"lesion in frame {fno or i}"
        ),
        referenced_segment=ref,
        finding_type=Code(*LESION_TYPE),
        algorithm_id=algo,
        measurements=[area_m],
    )


def _measurement_report(
    segs: list, spacing: tuple[float, float] | None, bundle_id: str, sources: list
):  # noqa: ANN001, ANN202
    """A TID 1500 report: one planar-ROI group per segmented frame, its lesion area (0 where the
    frame's SEG is empty: no lesion found), referencing the frame's SEG and the source image
    (frame)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    unit = codes.UCUM.SquareMillimeter if spacing else Code("{pixels}", "UCUM", "pixels")
    px_area = spacing[0] * spacing[1] if spacing else 1.0
    observer = _observer(bundle_id)
    algo = hd.sr.AlgorithmIdentification(name="qdev QuantU-Net", version=bundle_id[:64])
    groups = [
        _roi_group(seg, ds, fno, float(m.sum()) * px_area, unit, algo, i)
        for i, (seg, ds, fno, m) in enumerate(segs, start=1)
    ]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.UltrasonographyOfBreast,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*(x[0] for x in segs), *sources],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=902,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="qdev",
        is_complete=True,
        series_description=(RESEARCH.replace("segmentation", "measurements"))[:64],
    )
    _frame_or_segment(sr.ContentSequence)
    return sr


def _frame_or_segment(items) -> None:  # noqa: ANN001
    """highdicom's TID 1410 segmentation reference names both the SEG frame and its segment; the
    SR image reference macro has Referenced Segment Number only where no Referenced Frame
    Number is given (dciodvfy: "Shall not be present when ReferencedFrameNumber is present").
    Each SEG here has one frame of one segment, so the frame alone says it: the number goes."""
    for item in items:
        for ref in getattr(item, "ReferencedSOPSequence", []):
            if "ReferencedFrameNumber" in ref and "ReferencedSegmentNumber" in ref:
                del ref.ReferencedSegmentNumber
        _frame_or_segment(getattr(item, "ContentSequence", []))

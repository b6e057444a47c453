"""Test helpers: a small ultrasound cine as a scanner would write it (Ultrasound Multi-frame
Image Storage, uncompressed, calibrated through SequenceOfUltrasoundRegions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_us_cine(
    path: Path,
    frames: int = 6,
    rows: int = 120,
    cols: int = 160,
    seed: int = 0,
    delta_cm: tuple[float, float] = (0.02, 0.025),
):  # noqa: ANN201 - a pydicom Dataset
    """Write a multi-frame US file; ``delta_cm`` = (PhysicalDeltaX, PhysicalDeltaY) in cm."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P1", "Test^Patient", "", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = (
        "20261205",
        "120000",
        "",
        "",
        "1",
    )
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "US", 1, 1, "test"
    ds.Laterality, ds.PatientOrientation, ds.ImageType = (
        "L",
        ["L", "P"],
        ["ORIGINAL", "PRIMARY", "", "0001"],
    )
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = (
        1,
        "MONOCHROME2",
        rows,
        cols,
    )
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames, ds.FrameTime = frames, 40.0
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    r = Dataset()
    r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = 1, 1, 0
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = (
        0,
        0,
        cols - 1,
        rows - 1,
    )
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3
    r.PhysicalDeltaX, r.PhysicalDeltaY = delta_cm
    ds.SequenceOfUltrasoundRegions = [r]
    # something with structure: a dark ellipse on speckle, moving a little per frame
    y, x = np.mgrid[0:rows, 0:cols]
    px = rng.integers(90, 200, (frames, rows, cols)).astype(np.uint8)
    for f in range(frames):
        inside = ((x - cols * 0.5 - 2 * f) / (cols * 0.18)) ** 2 + (
            (y - rows * 0.5) / (rows * 0.15)
        ) ** 2 < 1
        px[f][inside] = rng.integers(0, 30, int(inside.sum()))
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds

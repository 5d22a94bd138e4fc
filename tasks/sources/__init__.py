"""Sources: what users give and how it is read.

Source and label specs, records and the catalogue, the raster (rasterio/GDAL), volume
(NIfTI, MONAI) and DICOM (pydicom) readers and inspectors, labels from masks, vectors, QA
bits and probability maps, ad-hoc inputs and the packaged sample data.
"""
